package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
)

// waitTimeout bounds every wait of the tests for something that should
// happen promptly.
const waitTimeout = 5 * time.Second

// fakeServer is a scripted Streamer server: each accepted connection is
// handed to the test, which reads the client's frames and writes messages.
type fakeServer struct {
	srv    *httptest.Server
	URL    string
	conns  chan *fakeConn
	auths  chan string
	reject atomic.Int32 // an HTTP status to refuse handshakes with, or 0
	quit   chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	live   []*websocket.Conn
	closed bool
}

// fakeConn is one accepted connection.
type fakeConn struct {
	c      *websocket.Conn
	frames chan frame
}

// frame is a client frame as the server reads it.
type frame struct {
	Action   string            `json:"action"`
	ID       string            `json:"id"`
	Payload  json.RawMessage   `json:"payload"`
	Metadata map[string]string `json:"metadata"`
}

// ref decodes the payload of a status, cancel or resume frame.
func (f frame) ref(t testing.TB) (string, *int64) {
	t.Helper()
	var p struct {
		RequestID string `json:"request_id"`
		AfterSeq  *int64 `json:"after_seq"`
	}
	require.NoError(t, json.Unmarshal(f.Payload, &p))
	return p.RequestID, p.AfterSeq
}

func newFakeServer(t testing.TB) *fakeServer {
	t.Helper()
	fs := &fakeServer{
		conns: make(chan *fakeConn, 16),
		auths: make(chan string, 64),
		quit:  make(chan struct{}),
	}
	fs.srv = httptest.NewServer(http.HandlerFunc(fs.serve))
	fs.URL = "ws" + strings.TrimPrefix(fs.srv.URL, "http")
	t.Cleanup(fs.Close)
	return fs
}

func (fs *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	fs.wg.Add(1)
	defer fs.wg.Done()
	select {
	case fs.auths <- r.Header.Get("Authorization"):
	default:
	}
	if code := fs.reject.Load(); code != 0 {
		http.Error(w, http.StatusText(int(code)), int(code))
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer func() { _ = c.CloseNow() }()
	fs.mu.Lock()
	if fs.closed {
		fs.mu.Unlock()
		return
	}
	fs.live = append(fs.live, c)
	fs.mu.Unlock()
	fc := &fakeConn{c: c, frames: make(chan frame, 64)}
	select {
	case fs.conns <- fc:
	case <-fs.quit:
		return
	}
	for {
		_, data, err := c.Read(context.Background())
		if err != nil {
			return
		}
		var f frame
		if json.Unmarshal(data, &f) != nil {
			f = frame{Action: "<not json>"}
		}
		select {
		case fc.frames <- f:
		case <-fs.quit:
			return
		}
	}
}

// Close drops every connection and stops the server, joining its handlers.
func (fs *fakeServer) Close() {
	fs.mu.Lock()
	if fs.closed {
		fs.mu.Unlock()
		return
	}
	fs.closed = true
	live := fs.live
	fs.mu.Unlock()
	close(fs.quit)
	for _, c := range live {
		_ = c.CloseNow()
	}
	fs.srv.Close()
	fs.wg.Wait()
}

// accept returns the next connection the client opened.
func (fs *fakeServer) accept(t testing.TB) *fakeConn {
	t.Helper()
	select {
	case fc := <-fs.conns:
		return fc
	case <-time.After(waitTimeout):
		t.Fatal("no connection")
		return nil
	}
}

// auth returns the Authorization header of the next handshake.
func (fs *fakeServer) auth(t testing.TB) string {
	t.Helper()
	select {
	case a := <-fs.auths:
		return a
	case <-time.After(waitTimeout):
		t.Fatal("no handshake")
		return ""
	}
}

// next returns the next frame the client sent on this connection.
func (fc *fakeConn) next(t testing.TB) frame {
	t.Helper()
	select {
	case f := <-fc.frames:
		return f
	case <-time.After(waitTimeout):
		t.Fatal("no frame from the client")
		return frame{}
	}
}

// send writes messages in their wire form.
func (fc *fakeConn) send(t testing.TB, msgs ...streamer.Message) {
	t.Helper()
	for i := range msgs {
		b, err := msgs[i].MarshalJSON()
		require.NoError(t, err)
		fc.sendRaw(t, string(b))
	}
}

func (fc *fakeConn) sendRaw(t testing.TB, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, fc.c.Write(ctx, websocket.MessageText, []byte(s)))
}

// drop closes the connection abruptly, as a network failure would.
func (fc *fakeConn) drop() { _ = fc.c.CloseNow() }

// Message builders.

func ack(id string, seq int64) streamer.Message {
	return streamer.Message{Type: streamer.TypeAcknowledgment, RequestID: id, Status: "queued", Seq: seq}
}

func progress(id string, seq int64, pct float64) streamer.Message {
	return streamer.Message{Type: streamer.TypeProgress, RequestID: id, Seq: seq, Percentage: pct, Message: "step", Timestamp: 1}
}

func complete(id string, seq int64, result string) streamer.Message {
	return streamer.Message{Type: streamer.TypeComplete, RequestID: id, Seq: seq, Result: json.RawMessage(result), Timestamp: 1}
}

func response(id, data string) streamer.Message {
	return streamer.Message{Type: streamer.TypeResponse, RequestID: id, Success: true, Data: json.RawMessage(data)}
}

func errorMsg(id string, seq int64, code string) streamer.Message {
	return streamer.Message{Type: streamer.TypeError, RequestID: id, Seq: seq, Error: &streamer.ErrorBody{Code: code, Message: "it failed"}}
}

func chunk(t testing.TB, id string, seq int64, index, total int, text string) streamer.Message {
	t.Helper()
	data, err := json.Marshal(text)
	require.NoError(t, err)
	return streamer.Message{Type: streamer.TypeResultChunk, RequestID: id, Seq: seq, Index: index, Total: total, Data: data}
}
