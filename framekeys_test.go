package streamer

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestDecodeFrameKeys(t *testing.T) {
	t.Parallel()
	deep := `{"action":"echo","payload":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`
	cases := []struct {
		name    string
		in      string
		wantErr string // a part of the message; "" when accepted
		wantID  string
	}{
		{"duplicate action", `{"action":"echo","action":"fail"}`, `"action" more than once`, ""},
		{"duplicate action keeps id", `{"id":"r-1","action":"echo","action":"fail"}`, `"action" more than once`, "r-1"},
		{"duplicate id", `{"action":"echo","id":"a","id":"b"}`, `"id" more than once`, ""},
		{"duplicate payload", `{"action":"echo","payload":1,"payload":2}`, `"payload" more than once`, ""},
		{"duplicate metadata", `{"action":"echo","metadata":{},"metadata":{"k":"v"}}`, `"metadata" more than once`, ""},
		{"duplicate unknown", `{"action":"echo","x":1,"x":2}`, `"x" more than once`, ""},
		{"escaped duplicate", `{"action":"echo","\u0061ction":"fail"}`, `"action" more than once`, ""},
		{"ACTION", `{"ACTION":"echo"}`, `"ACTION"; keys are case-sensitive: use "action"`, ""},
		{"ACTION overriding", `{"action":"echo","ACTION":"fail","id":"r-2"}`, `"ACTION"`, "r-2"},
		{"Id", `{"action":"echo","Id":"r-3"}`, `"Id"`, ""},
		{"Payload", `{"action":"echo","Payload":{}}`, `"Payload"`, ""},
		{"Metadata", `{"action":"echo","Metadata":{"k":"v"}}`, `"Metadata"`, ""},
		{"unicode fold", "{\"action\":\"echo\",\"metadata\":{},\"metadat\u0041\":{}}", `keys are case-sensitive`, ""},
		{"metadata duplicate", `{"action":"echo","id":"r-4","metadata":{"k":"v","k":"w"}}`, `metadata has the key "k" more than once`, "r-4"},
		{"metadata many keys duplicate", `{"action":"echo","metadata":{"a":"1","b":"1","c":"1","d":"1","e":"1","f":"1","g":"1","h":"1","i":"1","j":"1","a":"2"}}`, `"a" more than once`, ""},
		{"many unknown keys duplicate", `{"action":"echo","a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"j":2}`, `"j" more than once`, ""},
		{"metadata empty key twice", `{"action":"echo","metadata":{"":"a","":"b"}}`, `metadata has the key "" more than once`, ""},
		{"empty key twice", `{"action":"echo","":1,"":2}`, `the frame has the key "" more than once`, ""},
		{"metadata case variants are distinct", `{"action":"echo","metadata":{"k":"v","K":"w"}}`, "", ""},
		{"payload duplicates are the handler's", `{"action":"echo","payload":{"a":1,"a":2,"A":3,"action":"x"}}`, "", ""},
		{"unknown case variants are distinct", `{"action":"echo","x":1,"X":2}`, "", ""},
		{"strings with braces", `{"action":"echo","payload":["}",{"a":"\"]"}],"id":"r-5"}`, "", "r-5"},
		{"whitespace", " \n{ \"action\" : \"echo\" ,\t\"id\" :\"r-6\" } ", "", "r-6"},
		{"deep payload", deep, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := DecodeFrame([]byte(tc.in))
			if tc.wantErr == "" {
				require.Nil(t, err)
				require.Equal(t, "echo", f.Action)
				require.Equal(t, tc.wantID, f.ID)
				return
			}
			require.NotNil(t, err)
			require.Equal(t, CodeInvalidMessage, err.Code)
			require.Contains(t, err.Message, tc.wantErr)
			require.Equal(t, tc.wantID, f.ID)
		})
	}
}

// TestDecodeFrameTooDeep pins the nesting limit documented in
// docs/protocol.md: encoding/json's 10000 levels.
func TestDecodeFrameTooDeep(t *testing.T) {
	t.Parallel()
	in := `{"action":"echo","id":"r-1","payload":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`
	_, err := DecodeFrame([]byte(in))
	require.NotNil(t, err)
	require.Equal(t, CodeInvalidMessage, err.Code)
	in = `{"action":"echo","payload":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`
	_, err = DecodeFrame([]byte(in))
	require.Nil(t, err)
}

// refKeyProblem is a slow reference for checkFrameKeys built on
// json.Decoder.Token: whether the top-level object has a duplicate key, a
// case variant of a protocol key, or metadata with a duplicate key.
func refKeyProblem(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		key := tok.(string)
		if seen[key] {
			return true
		}
		seen[key] = true
		for _, name := range frameKeys {
			if key != name && strings.EqualFold(key, name) {
				return true
			}
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return false
		}
		if key == "metadata" && len(v) > 0 && v[0] == '{' {
			md := json.NewDecoder(bytes.NewReader(v))
			_, _ = md.Token()
			mseen := map[string]bool{}
			for md.More() {
				tok, err := md.Token()
				if err != nil {
					return false
				}
				if mseen[tok.(string)] {
					return true
				}
				mseen[tok.(string)] = true
				var mv json.RawMessage
				if err := md.Decode(&mv); err != nil {
					return false
				}
			}
		}
	}
	return false
}

// FuzzFrameKeys checks the one-pass key scanner against the reference on
// every input encoding/json accepts as JSON.
func FuzzFrameKeys(f *testing.F) {
	for _, s := range []string{
		`{"action":"echo","action":"fail"}`, `{"ACTION":"echo"}`, `{"action":"echo","metadata":{"k":"v","k":"w"}}`,
		`{"action":"echo","payload":{"a":1,"a":2}}`, `{"a\u0063tion":"x","action":"y"}`, `{"x":[{"}":"]"}],"x":1}`,
		` { "id" : "r" , "Id" : "s" } `, `{"action":"echo","payload":"\\\"","id":"r-1"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) || !utf8.Valid(data) { // DecodeFrame refuses invalid UTF-8 first
			_, _ = checkFrameKeys(data) // must not panic or hang
			return
		}
		msg, _ := checkFrameKeys(data)
		if want := refKeyProblem(data); want != (msg != "") {
			t.Fatalf("checkFrameKeys(%q) = %q, reference says problem=%v", data, msg, want)
		}
	})
}
