package streamer

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestDecodeFrame(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		in      string
		wantErr bool
		wantID  string
		action  string
	}{
		{"minimal", `{"action":"echo"}`, false, "", "echo"},
		{"full", `{"action":"a.b:c-d_e","id":"r-1","payload":{"x":1},"metadata":{"k":"v"},"extra":true}`, false, "r-1", "a.b:c-d_e"},
		{"null payload", `{"action":"echo","payload":null}`, false, "", "echo"},
		{"escaped action", `{"action":"ec\u0068o"}`, false, "", "echo"},
		{"not json", `hello`, true, "", ""},
		{"array", `[1,2]`, true, "", ""},
		{"string", `"echo"`, true, "", ""},
		{"empty", ``, true, "", ""},
		{"no action", `{"id":"r-2"}`, true, "r-2", ""},
		{"null action", `{"action":null,"id":"r-3"}`, true, "r-3", ""},
		{"number action", `{"action":5,"id":"r-4"}`, true, "r-4", ""},
		{"bad action chars", `{"action":"a b","id":"r-5"}`, true, "r-5", ""},
		{"long action", `{"action":"` + strings.Repeat("a", 129) + `"}`, true, "", ""},
		{"bad id", `{"action":"echo","id":"a/b"}`, true, "", ""},
		{"number id", `{"action":"echo","id":7}`, true, "", ""},
		{"long id", `{"action":"echo","id":"` + strings.Repeat("i", 129) + `"}`, true, "", ""},
		{"metadata not object", `{"action":"echo","id":"r-6","metadata":[1]}`, true, "r-6", ""},
		{"metadata number value", `{"action":"echo","id":"r-7","metadata":{"k":1}}`, true, "r-7", ""},
		{"invalid utf8", "{\"action\":\"echo\",\"payload\":\"\xff\"}", true, "", ""},
		{"trailing garbage", `{"action":"echo"} x`, true, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := DecodeFrame([]byte(tc.in))
			if tc.wantErr {
				require.NotNil(t, err)
				require.Equal(t, CodeInvalidMessage, err.Code)
				require.NotEmpty(t, err.Message)
				require.Equal(t, tc.wantID, f.ID)
				return
			}
			require.Nil(t, err)
			require.Equal(t, tc.action, f.Action)
			require.Equal(t, tc.wantID, f.ID)
		})
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, s := range []string{
		`{"action":"echo","id":"r-1","payload":{"a":[1,2,{"b":null}]},"metadata":{"k":"v"}}`,
		`{"action":"status","payload":{"request_id":"x","after_seq":3}}`,
		`{"action":5}`, `[]`, `null`, `{"action":"a","metadata":{"k":1}}`, "{\"action\":\"\xff\"}",
		// Key rules (docs/protocol.md section 5, "Frame keys").
		`{"action":"echo","action":"fail"}`, `{"ACTION":"echo"}`, `{"action":"echo","Id":"r-1"}`,
		`{"action":"echo","metadata":{"k":"v","k":"w"}}`, `{"action":"echo","payload":{"a":1,"a":2}}`,
		`{"\u0061ction":"echo","action":"x"}`, `{"action":"echo","payload":[[[[[[[[[[]]]]]]]]]]}`,
		`{"action":"echo","payload":1e999999}`, `{"action":"echo","payload":"\ud800"}`, `{"action":"ec`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := DecodeFrame(data)
		if err != nil {
			if err.Code != CodeInvalidMessage || err.Message == "" {
				t.Fatalf("bad error %#v", err)
			}
			if fr.ID != "" && !ValidName(fr.ID) {
				t.Fatalf("invalid id %q returned with error", fr.ID)
			}
			// The error reply itself must encode to valid JSON.
			m := Message{Type: TypeError, RequestID: fr.ID, Error: Body(err, CodeInternal)}
			if b := m.AppendJSON(nil); !json.Valid(b) {
				t.Fatalf("invalid error reply %s", b)
			}
			return
		}
		if !ValidName(fr.Action) {
			t.Fatalf("accepted invalid action %q", fr.Action)
		}
		if fr.ID != "" && !ValidName(fr.ID) {
			t.Fatalf("accepted invalid id %q", fr.ID)
		}
		if len(fr.Payload) > 0 && !json.Valid(fr.Payload) {
			t.Fatalf("payload not JSON: %q", fr.Payload)
		}
		// An echo response built from it must be valid JSON.
		m := Message{Type: TypeResponse, RequestID: fr.ID, Success: true, Data: fr.Payload}
		if b := m.AppendJSON(nil); !json.Valid(b) {
			t.Fatalf("invalid response %s", b)
		}
	})
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", `q"b\s`, "\n\r\t\x00\x1f", "héllo ✓ 😀", "\u2028\u2029", "\xff\xfe bad", "<>&"} {
		got := appendString(nil, s)
		var back string
		require.NoError(t, json.Unmarshal(got, &back), "%q → %s", s, got)
		std, err := json.Marshal(s)
		require.NoError(t, err)
		var want string
		require.NoError(t, json.Unmarshal(std, &want))
		require.Equal(t, want, back, "same text as encoding/json gives")
		require.Equal(t, len(got), quotedLen(s), "quotedLen of %q", s)
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("abc\"\\\n\u2028😀\xff")
	f.Fuzz(func(t *testing.T, s string) {
		got := appendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q → invalid %s: %v", s, got, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("round trip %q → %q", s, back)
		}
		if len(got) != quotedLen(s) {
			t.Fatalf("quotedLen %d, encoded %d", quotedLen(s), len(got))
		}
	})
}

func TestMessageShapes(t *testing.T) {
	t.Parallel()
	decode := func(m *Message) map[string]any {
		b, err := json.Marshal(m)
		require.NoError(t, err)
		var out map[string]any
		require.NoError(t, json.Unmarshal(b, &out), "%s", b)
		return out
	}
	ack := decode(&Message{Type: TypeAcknowledgment, RequestID: "r", Status: "queued"})
	require.Equal(t, map[string]any{"type": "acknowledgment", "request_id": "r", "status": "queued", "seq": 0.0}, ack)

	prog := decode(&Message{Type: TypeProgress, RequestID: "r", Seq: 1, Percentage: 0, Message: "", Timestamp: 5})
	require.Equal(t, 0.0, prog["percentage"], "percentage 0 is sent")
	require.Contains(t, prog, "message")
	require.Equal(t, 1.0, prog["seq"])

	sync := decode(&Message{Type: TypeProgress, RequestID: "r", Percentage: 12.5, Message: "m"})
	require.NotContains(t, sync, "seq", "sync progress has no seq")

	chunk := decode(&Message{Type: TypeResultChunk, RequestID: "r", Seq: 2, Index: 0, Total: 3, Data: appendString(nil, "ab")})
	require.Equal(t, 0.0, chunk["index"])
	require.Equal(t, "ab", chunk["data"])

	resp := decode(&Message{Type: TypeResponse, RequestID: "r", Success: true, Data: json.RawMessage(`null`)})
	require.Contains(t, resp, "data")
	require.Equal(t, true, resp["success"])

	failed := decode(&Message{Type: TypeResponse, RequestID: "r", Error: &ErrorBody{Code: "X", Message: "y"}})
	require.Equal(t, false, failed["success"])
	require.NotContains(t, failed, "data")

	complete := decode(&Message{Type: TypeComplete, RequestID: "r", Seq: 3, Chunks: 2})
	require.NotContains(t, complete, "result")
	require.Equal(t, 2.0, complete["chunks"])

	started := decode(&Message{Type: TypeStarted, RequestID: "r", Seq: 1, Attempt: 1, Timestamp: 7})
	require.Equal(t, map[string]any{"type": "started", "request_id": "r", "seq": 1.0, "attempt": 1.0, "percentage": 0.0, "message": "", "timestamp": 7.0}, started)
	continued := decode(&Message{Type: TypeContinued, RequestID: "r", Seq: 5, Attempt: 1, Continuations: 2, Percentage: 40, Message: "item 4/10"})
	require.Equal(t, map[string]any{"type": "continued", "request_id": "r", "seq": 5.0, "attempt": 1.0, "continuations": 2.0, "percentage": 40.0, "message": "item 4/10"}, continued)
	retrying := decode(&Message{Type: TypeRetrying, RequestID: "r", Seq: 2, Attempt: 1, NextAt: 1000, Error: &ErrorBody{Code: "UPSTREAM", Message: "down", Retryable: true}})
	require.Equal(t, map[string]any{"type": "retrying", "request_id": "r", "seq": 2.0, "attempt": 1.0, "next_at": 1000.0,
		"error": map[string]any{"code": "UPSTREAM", "message": "down", "retryable": true}, "percentage": 0.0, "message": ""}, retrying)
	for _, m := range []*Message{{Type: TypeStarted}, {Type: TypeContinued}, {Type: TypeRetrying}} {
		require.True(t, m.Lifecycle(), m.Type)
		require.False(t, m.Terminal(), m.Type)
	}
	require.False(t, (&Message{Type: TypeProgress}).Lifecycle())

	pong := decode(&Message{Type: TypePong, Timestamp: 9})
	require.Equal(t, map[string]any{"type": "pong", "timestamp": 9.0}, pong)

	// Decoding into Message works for clients.
	var m Message
	require.NoError(t, json.Unmarshal([]byte(`{"type":"result_chunk","request_id":"r","seq":4,"index":1,"total":2,"data":"x\"y"}`), &m))
	text, err := m.ChunkText()
	require.NoError(t, err)
	require.Equal(t, `x"y`, text)
}

func TestSplitResult(t *testing.T) {
	t.Parallel()
	text := strings.Repeat(`{"k":"é\"😀\n"},`, 5000)
	for _, budget := range []int{16, 100, 1000, 4096} {
		parts := splitResult(text, budget)
		require.Equal(t, text, strings.Join(parts, ""))
		for _, p := range parts {
			require.True(t, utf8.ValidString(p))
			require.LessOrEqual(t, quotedLen(p), budget)
			require.NotEmpty(t, p)
		}
	}
	require.Equal(t, []string{"abc"}, splitResult("abc", 100))
}

func TestChunkMessagesFitTheLimit(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("i", 128)
	text := strings.Repeat("\x01\"", 200000) // worst-case escaping
	parts := splitResult(text, chunkBudget(id))
	for i, p := range parts {
		m := chunkMessage(id, 1<<40, i, len(parts), p)
		require.LessOrEqual(t, len(m.AppendJSON(nil)), MaxMessageSize)
	}
}
