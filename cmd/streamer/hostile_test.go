package main_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
)

// hostileCase is one frame a hostile client sends, and what the protocol
// says the answer is.
type hostileCase struct {
	name   string
	frame  string
	binary bool
	// code is the error code of the answer; "" means a successful sync
	// response (an echo).
	code      string
	requestID string // the answer's request_id
	// notStored is a request id the frame names that must not be stored
	// (its status stays NOT_FOUND).
	notStored string
}

// nested returns depth nested JSON arrays.
func nested(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}

// TestHostileInput sends a hostile client's frames to `streamer dev`
// (docs/protocol.md sections 1, 2, 4 and 5, "Frame keys" and "Nesting and
// numbers"): each gets its documented answer, the connection stays usable
// (a ping after each is answered pong), nothing is stored for a refused
// frame, and the requests already stored are not altered.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	s := shared(t)
	tok := token(t, uid("hostile"), "")
	owner := dialRaw(t, s, tok)

	// Stored state no case may alter: a finished request and a running one.
	done := uid("done")
	owner.ack("delay", done, map[string]int{"ms": 0, "steps": 1})
	owner.untilTerminal(done)
	doneBefore := owner.status(done)
	require.Equal(t, "succeeded", doneBefore.Status)
	long := uid("long")
	owner.ack("delay", long, map[string]int{"ms": 600000, "steps": 1})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		defer cancel()
		_ = owner.c.Write(ctx, websocket.MessageText, []byte(`{"action":"cancel","payload":{"request_id":"`+long+`"}}`))
	})

	longID := func(p string) string { return p + "-" + uid("x") }
	dupAsync, caseAsync, smuggle := longID("dup"), longID("case"), longID("smuggle")
	cases := []hostileCase{
		// Duplicate keys: encoding/json would run the last one.
		{name: "duplicate action", frame: `{"id":"` + dupAsync + `","action":"echo","action":"delay","payload":{"ms":0,"steps":1}}`, code: streamer.CodeInvalidMessage, requestID: dupAsync, notStored: dupAsync},
		{name: "duplicate action, sync last", frame: `{"action":"delay","action":"echo","payload":{"ms":0,"steps":1}}`, code: streamer.CodeInvalidMessage},
		{name: "duplicate id", frame: `{"action":"echo","id":"h-a","id":"h-b"}`, code: streamer.CodeInvalidMessage},
		{name: "duplicate payload", frame: `{"action":"echo","id":"h-p","payload":1,"payload":2}`, code: streamer.CodeInvalidMessage, requestID: "h-p"},
		{name: "duplicate metadata", frame: `{"action":"echo","id":"h-m","metadata":{},"metadata":{}}`, code: streamer.CodeInvalidMessage, requestID: "h-m"},
		{name: "duplicate key in metadata", frame: `{"action":"echo","id":"h-mk","metadata":{"k":"a","k":"b"}}`, code: streamer.CodeInvalidMessage, requestID: "h-mk"},
		{name: "escaped duplicate action", frame: `{"action":"echo","\u0061ction":"delay"}`, code: streamer.CodeInvalidMessage},
		{name: "cancel smuggled after ping", frame: `{"action":"ping","action":"cancel","payload":{"request_id":"` + long + `"}}`, code: streamer.CodeInvalidMessage},
		{name: "duplicate unknown key", frame: `{"action":"echo","x":1,"x":2}`, code: streamer.CodeInvalidMessage},
		// Keys that differ from the protocol's only in case.
		{name: "ACTION", frame: `{"ACTION":"echo"}`, code: streamer.CodeInvalidMessage},
		{name: "ACTION overriding action", frame: `{"action":"echo","ACTION":"delay","id":"` + caseAsync + `","payload":{"ms":0,"steps":1}}`, code: streamer.CodeInvalidMessage, requestID: caseAsync, notStored: caseAsync},
		{name: "Id", frame: `{"action":"delay","Id":"` + smuggle + `","payload":{"ms":0,"steps":1}}`, code: streamer.CodeInvalidMessage, notStored: smuggle},
		{name: "Payload", frame: `{"action":"echo","id":"h-P","Payload":{"a":1}}`, code: streamer.CodeInvalidMessage, requestID: "h-P"},
		{name: "Metadata", frame: `{"action":"echo","id":"h-M","Metadata":{"k":"v"}}`, code: streamer.CodeInvalidMessage, requestID: "h-M"},
		// Inside payload, keys are the handler's business.
		{name: "duplicate keys in payload pass", frame: `{"action":"echo","id":"h-pd","payload":{"a":1,"a":2,"ACTION":"x"}}`, requestID: "h-pd"},
		// Malformed and truncated JSON.
		{name: "truncated object", frame: `{"action":"echo","id":"h-t1","payload":{"a":[1,2`, code: streamer.CodeInvalidMessage},
		{name: "truncated key", frame: `{"action":"ec`, code: streamer.CodeInvalidMessage},
		{name: "open brace", frame: `{`, code: streamer.CodeInvalidMessage},
		{name: "trailing comma", frame: `{"action":"echo",}`, code: streamer.CodeInvalidMessage},
		{name: "single quotes", frame: `{'action':'echo'}`, code: streamer.CodeInvalidMessage},
		{name: "two objects", frame: `{"action":"echo"}{"action":"delay","payload":{"ms":0,"steps":1}}`, code: streamer.CodeInvalidMessage},
		{name: "NUL in action", frame: `{"action":"echo\u0000"}`, code: streamer.CodeInvalidMessage},
		{name: "NaN payload", frame: `{"action":"echo","payload":NaN}`, code: streamer.CodeInvalidMessage},
		// Deep nesting: encoding/json's 10000 levels, documented.
		{name: "nesting 9000 passes", frame: `{"action":"echo","id":"h-n1","payload":` + nested(9000) + `}`, requestID: "h-n1"},
		{name: "nesting 60000 in payload", frame: `{"action":"echo","id":"h-n2","payload":` + nested(60000) + `}`, code: streamer.CodeInvalidMessage},
		{name: "nesting 60000 in metadata", frame: `{"action":"echo","metadata":{"k":` + nested(60000) + `}}`, code: streamer.CodeInvalidMessage},
		{name: "nesting 20000 objects", frame: `{"action":"echo","payload":` + strings.Repeat(`{"a":`, 20000) + `1` + strings.Repeat("}", 20000) + `}`, code: streamer.CodeInvalidMessage},
		// Invalid UTF-8.
		{name: "invalid UTF-8 in payload", frame: "{\"action\":\"echo\",\"id\":\"h-u1\",\"payload\":\"\xff\xfe\"}", code: streamer.CodeInvalidMessage},
		{name: "invalid UTF-8 in a key", frame: "{\"action\":\"echo\",\"\xc3\":1}", code: streamer.CodeInvalidMessage},
		{name: "overlong slash", frame: "{\"action\":\"echo\",\"payload\":\"\xc0\xaf\"}", code: streamer.CodeInvalidMessage},
		{name: "UTF-8 surrogate", frame: "{\"action\":\"echo\",\"payload\":\"\xed\xa0\x80\"}", code: streamer.CodeInvalidMessage},
		{name: "escaped lone surrogate passes", frame: `{"action":"echo","id":"h-u2","payload":"\ud800"}`, requestID: "h-u2"},
		// Huge numbers: passed on as their text.
		{name: "huge number in payload", frame: `{"action":"echo","id":"h-h1","payload":1e999999}`, requestID: "h-h1"},
		{name: "long integer in payload", frame: `{"action":"echo","id":"h-h2","payload":` + strings.Repeat("9", 100000) + `}`, requestID: "h-h2"},
		{name: "huge delay ms", frame: `{"action":"delay","id":"h-h3","payload":{"ms":1e400,"steps":1}}`, code: streamer.CodeValidation, requestID: "h-h3", notStored: "h-h3"},
		{name: "huge after_seq", frame: `{"action":"resume","payload":{"request_id":"` + done + `","after_seq":1e30}}`, code: streamer.CodeValidation, requestID: done},
		{name: "huge number as action", frame: `{"action":1e999999}`, code: streamer.CodeInvalidMessage},
		// Oversized ids.
		{name: "id of 129 characters", frame: `{"action":"echo","id":"` + strings.Repeat("i", 129) + `"}`, code: streamer.CodeInvalidMessage},
		{name: "id of 100000 characters", frame: `{"action":"delay","id":"` + strings.Repeat("i", 100000) + `","payload":{"ms":0,"steps":1}}`, code: streamer.CodeInvalidMessage},
		{name: "status of a 100000-character id", frame: `{"action":"status","payload":{"request_id":"` + strings.Repeat("i", 100000) + `"}}`, code: streamer.CodeValidation},
		{name: "action of 100000 characters", frame: `{"action":"` + strings.Repeat("a", 100000) + `"}`, code: streamer.CodeInvalidMessage},
		// Binary frames.
		{name: "binary frame", frame: `{"action":"echo","id":"h-b1"}`, binary: true, code: streamer.CodeInvalidMessage},
		{name: "binary garbage", frame: "\x00\x01\xff", binary: true, code: streamer.CodeInvalidMessage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, s, tok)
			typ := websocket.MessageText
			if tc.binary {
				typ = websocket.MessageBinary
			}
			ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
			defer cancel()
			require.NoError(t, r.c.Write(ctx, typ, []byte(tc.frame)))
			m := r.read()
			t.Logf("answer: %s %+v", m.Type, m.Error)
			if tc.code == "" {
				require.Equal(t, streamer.TypeResponse, m.Type, "%+v (error %+v)", m, m.Error)
				require.True(t, m.Success)
				require.Equal(t, tc.requestID, m.RequestID)
			} else {
				require.Equal(t, streamer.TypeError, m.Type, "%+v", m)
				require.Equal(t, tc.code, m.Error.Code, "%+v", m.Error)
				require.NotEmpty(t, m.Error.Message)
				if tc.requestID != "" || tc.code == streamer.CodeInvalidMessage {
					require.Equal(t, tc.requestID, m.RequestID)
				}
				require.Zero(t, m.Seq)
			}
			require.Empty(t, r.ping(), "the connection stays usable")
			if tc.notStored != "" {
				st := r.status(tc.notStored)
				require.Equal(t, streamer.TypeError, st.Type, "%s was stored: %+v", tc.notStored, st)
				require.Equal(t, streamer.CodeNotFound, st.Error.Code)
			}
		})
	}

	// Nothing stored was altered (asked on a connection that follows
	// no request).
	checker := dialRaw(t, s, tok)
	doneAfter := checker.status(done)
	require.Equal(t, doneBefore.Status, doneAfter.Status)
	require.Equal(t, doneBefore.Seq, doneAfter.Seq)
	require.JSONEq(t, string(doneBefore.Result), string(doneAfter.Result))
	require.Equal(t, doneBefore.UpdatedAt, doneAfter.UpdatedAt)
	longAfter := checker.status(long)
	require.Contains(t, []string{"queued", "running"}, longAfter.Status, "the smuggled cancel did not run")
}

// TestHostileOversizedFrames: frames over 128 KiB (such as 100000 nested
// arrays) close the connection with 1009 as section 1 says; the server
// stays up and serves a new connection.
func TestHostileOversizedFrames(t *testing.T) {
	t.Parallel()
	s := shared(t)
	tok := token(t, uid("oversized"), "")
	for name, frame := range map[string]string{
		"100000 nested arrays": `{"action":"echo","payload":` + nested(100000) + `}`,
		"a 1 MiB id":           `{"action":"echo","id":"` + strings.Repeat("i", 1<<20) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			r := dialRaw(t, s, tok)
			ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
			defer cancel()
			_ = r.c.Write(ctx, websocket.MessageText, []byte(frame)) // the server may close while it is written
			_, data, err := r.readRaw()
			require.Error(t, err, "a message instead of the close: %.200s", data)
			require.Equal(t, websocket.StatusMessageTooBig, websocket.CloseStatus(err), "want close 1009, got %v", err)
			require.Empty(t, dialRaw(t, s, tok).ping(), "the server serves a new connection")
		})
	}
}

// TestDevCorruptStore: `streamer dev` on a truncated or overwritten bolt
// file stops at start with a message that names the file and says what to
// do, never a panic.
func TestDevCorruptStore(t *testing.T) {
	t.Parallel()
	if os.Getenv("STREAMER_E2E_RUNTIME") == "aws-local" {
		t.Skip("the bolt file is the embedded runtime's")
	}
	// A real file, written by a server that ran a request.
	dir := t.TempDir()
	owner, stored := uid("corrupt"), uid("c")
	srv, err := launchDev("127.0.0.1:0", dir)
	require.NoError(t, err)
	func() {
		defer srv.stop()
		r := dialRaw(t, srv, token(t, owner, ""))
		r.ack("delay", stored, map[string]int{"ms": 0, "steps": 1})
		r.untilTerminal(stored)
	}()
	path := filepath.Join(dir, "streamer.db")
	good, err := os.ReadFile(path)
	require.NoError(t, err)

	for name, spoil := range map[string]func() []byte{
		"truncated": func() []byte { return good[:len(good)/2] },
		"freelist overwritten": func() []byte {
			return append(append(append([]byte{}, good[:8192]...), make([]byte, 4096)...), good[12288:]...)
		},
		"meta overwritten": func() []byte { return append(make([]byte, 8192), good[8192:]...) },
		"data pages overwritten": func() []byte {
			b := append([]byte{}, good...)
			for i := 3 * 4096; i < len(b); i++ {
				b[i] = 0x5a
			}
			return b
		},
		"not a database": func() []byte { return []byte(strings.Repeat("hello\n", 2000)) },
	} {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			p := filepath.Join(d, "streamer.db")
			require.NoError(t, os.WriteFile(p, spoil(), 0o600))
			s, err := launchDev("127.0.0.1:0", d)
			if err == nil {
				t.Log("started: the damage is found by a read")
				// Damage only a read finds: the server must still not
				// crash, and its frames are answered.
				defer s.stop()
				r := dialRaw(t, s, token(t, owner, ""))
				require.Empty(t, r.ping())
				st := r.status(stored)
				t.Logf("status: %s %+v", st.Type, st.Error)
				r.request("list", "l-1", nil)
				l := r.readFor("l-1")
				t.Logf("list: %s %+v", l.Type, l.Error)
				require.Empty(t, r.ping())
				select {
				case <-s.exited:
					t.Fatalf("streamer dev exited: %v", s.waitErr)
				default:
				}
				return
			}
			msg := err.Error()
			t.Logf("refused: %s", msg)
			require.NotContains(t, msg, "panic", msg)
			require.Contains(t, msg, p, "names the file")
			require.Contains(t, msg, "move it aside", "says what to do")
		})
	}
}
