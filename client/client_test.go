package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
)

type testBundle struct {
	fs     *fakeServer
	client *client.Client
	conn   *fakeConn
}

// setup starts a fake server and dials it with opts (a fast backoff unless
// set), returning the connection the server accepted.
func setup(t *testing.T, opts client.Options) *testBundle {
	t.Helper()
	fs := newFakeServer(t)
	if opts.MinBackoff == 0 {
		opts.MinBackoff = time.Millisecond
		opts.MaxBackoff = 5 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.Dial(ctx, fs.URL, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &testBundle{fs: fs, client: c, conn: fs.accept(t)}
}

type result struct {
	data     json.RawMessage
	err      error
	progress []client.Progress
}

// start runs Request in a goroutine, collecting progress; the result
// arrives on the returned channel.
func start(c *client.Client, ctx context.Context, action string, payload any, opts ...client.RequestOption) <-chan result {
	out := make(chan result, 1)
	go func() {
		var got []client.Progress
		opts = append(opts, client.WithProgress(func(p client.Progress) { got = append(got, p) }))
		data, err := c.Request(ctx, action, payload, opts...)
		out <- result{data: data, err: err, progress: got}
	}()
	return out
}

func wait[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatal("timed out")
		var zero T
		return zero
	}
}

func seqs(ps []client.Progress) []int64 {
	out := make([]int64, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Seq)
	}
	return out
}

func TestSyncResponse(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{Token: "tok"})
	assert.Equal(t, "Bearer tok", b.fs.auth(t))

	res := start(b.client, context.Background(), "echo", map[string]int{"n": 1}, client.WithMetadata(map[string]string{"k": "v"}))
	f := b.conn.next(t)
	assert.Equal(t, "echo", f.Action)
	assert.True(t, streamer.ValidName(f.ID), "id %q", f.ID)
	assert.True(t, strings.HasPrefix(f.ID, "c-"), "id %q", f.ID)
	assert.JSONEq(t, `{"n":1}`, string(f.Payload))
	assert.Equal(t, map[string]string{"k": "v"}, f.Metadata)

	// Sync progress has no seq and still reaches the callback.
	b.conn.send(t, streamer.Message{Type: streamer.TypeProgress, RequestID: f.ID, Percentage: 50, Message: "half"})
	b.conn.send(t, response(f.ID, `{"echo": 1}`))
	r := wait(t, res)
	require.NoError(t, r.err)
	assert.Equal(t, `{"echo": 1}`, string(r.data))
	require.Len(t, r.progress, 1)
	assert.Equal(t, client.Progress{RequestID: f.ID, Percentage: 50, Message: "half"}, r.progress[0])
}

func TestRequestWithIDAndNoPayload(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	assert.Empty(t, b.fs.auth(t), "no token, no header")

	res := start(b.client, context.Background(), "noop", nil, client.WithID("my-id.1"))
	f := b.conn.next(t)
	assert.Equal(t, "my-id.1", f.ID)
	assert.Empty(t, f.Payload)
	b.conn.send(t, streamer.Message{Type: streamer.TypeResponse, RequestID: f.ID, Success: true})
	r := wait(t, res)
	require.NoError(t, r.err)
	assert.Equal(t, "null", string(r.data))
}

func TestAsyncAckProgressComplete(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	res := start(b.client, context.Background(), "report", map[string]string{"from": "2024"})
	id := b.conn.next(t).ID

	md := streamer.Message{Type: streamer.TypeProgress, RequestID: id, Seq: 2, Percentage: 60, Message: "more", Metadata: map[string]string{"stage": "b"}}
	b.conn.send(t, ack(id, 0), progress(id, 1, 10), md, complete(id, 3, `{"rows":3}`))
	r := wait(t, res)
	require.NoError(t, r.err)
	assert.JSONEq(t, `{"rows":3}`, string(r.data))
	require.Equal(t, []int64{1, 2}, seqs(r.progress))
	assert.Equal(t, client.Progress{RequestID: id, Seq: 2, Percentage: 60, Message: "more", Metadata: map[string]string{"stage": "b"}}, r.progress[1])
}

func TestDuplicateSeqDropped(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	res := start(b.client, context.Background(), "report", nil)
	id := b.conn.next(t).ID
	b.conn.send(t, ack(id, 0), progress(id, 1, 10), progress(id, 1, 10), progress(id, 2, 20),
		progress(id, 1, 10), progress(id, 2, 20), complete(id, 3, `1`), complete(id, 3, `2`))
	r := wait(t, res)
	require.NoError(t, r.err)
	assert.Equal(t, "1", string(r.data))
	assert.Equal(t, []int64{1, 2}, seqs(r.progress))
}

func TestGapSendsResume(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	res := start(b.client, context.Background(), "report", nil)
	id := b.conn.next(t).ID
	b.conn.send(t, ack(id, 0), progress(id, 1, 10), progress(id, 3, 30), progress(id, 4, 40))

	f := b.conn.next(t)
	require.Equal(t, streamer.ActionResume, f.Action)
	rid, after := f.ref(t)
	assert.Equal(t, id, rid)
	require.NotNil(t, after)
	assert.Equal(t, int64(1), *after)

	// The replay, with live events racing it.
	b.conn.send(t, progress(id, 2, 20), progress(id, 3, 30), progress(id, 5, 50),
		progress(id, 4, 40), progress(id, 5, 50), complete(id, 6, `"done"`))
	r := wait(t, res)
	require.NoError(t, r.err)
	assert.Equal(t, `"done"`, string(r.data))
	assert.Equal(t, []int64{1, 2, 3, 4, 5}, seqs(r.progress))

	// Only one resume was sent for the gap: the next frame is our ping.
	pingDone := make(chan error, 1)
	go func() { pingDone <- b.client.Ping(context.Background()) }()
	assert.Equal(t, streamer.ActionPing, b.conn.next(t).Action)
	b.conn.send(t, streamer.Message{Type: streamer.TypePong, Timestamp: 1})
	require.NoError(t, wait(t, pingDone))
}

// bigResult is a result with multi-byte UTF-8 and formatting a re-encoding
// would lose, cut into pieces at rune boundaries.
const bigResult = `{"greeting": "héllo wörld",  "emoji": "🎉🚀", "cjk": "日本語のテキスト", "esc": "a\"b\\c <&>", "n": [1, 2.50, 3]}`

func pieces(s string, n int) []string {
	runes := []rune(s)
	size := (len(runes) + n - 1) / n
	var out []string
	for i := 0; i < len(runes); i += size {
		out = append(out, string(runes[i:min(i+size, len(runes))]))
	}
	return out
}

func TestChunkedAsyncResult(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	res := start(b.client, context.Background(), "big", nil)
	id := b.conn.next(t).ID
	parts := pieces(bigResult, 4)
	require.Len(t, parts, 4)
	b.conn.send(t, ack(id, 0), progress(id, 1, 50))
	for i, p := range parts {
		b.conn.send(t, chunk(t, id, int64(i+2), i, len(parts), p))
	}
	b.conn.send(t, chunk(t, id, 3, 1, len(parts), "garbage of a duplicate seq"))
	b.conn.send(t, streamer.Message{Type: streamer.TypeComplete, RequestID: id, Seq: 6, Chunks: len(parts)})
	r := wait(t, res)
	require.NoError(t, r.err)
	assert.Equal(t, bigResult, string(r.data))
	assert.Equal(t, []int64{1}, seqs(r.progress))
}

// TestStaleChunksOfARetriedAttempt: an attempt that wrote three chunks and
// was re-queued leaves them in the log; the next attempt's result has two.
func TestStaleChunksOfARetriedAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	res := start(b.client, context.Background(), "big", nil)
	id := b.conn.next(t).ID
	stale := pieces(bigResult, 3)
	parts := pieces(bigResult, 2)
	require.Len(t, stale, 3)
	require.Len(t, parts, 2)
	b.conn.send(t, ack(id, 0))
	for i, p := range stale {
		b.conn.send(t, chunk(t, id, int64(i+1), i, len(stale), p))
	}
	b.conn.send(t, progress(id, 4, 50))
	for i, p := range parts {
		b.conn.send(t, chunk(t, id, int64(i+5), i, len(parts), p))
	}
	b.conn.send(t, streamer.Message{Type: streamer.TypeComplete, RequestID: id, Seq: 7, Chunks: len(parts)})
	r := wait(t, res)
	require.NoError(t, r.err)
	assert.Equal(t, bigResult, string(r.data))
}

func TestChunkedSyncResponse(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	res := start(b.client, context.Background(), "big", nil)
	id := b.conn.next(t).ID
	parts := pieces(bigResult, 3)
	require.Len(t, parts, 3)
	// Out of index order: the index places them.
	for _, i := range []int{2, 0, 1} {
		b.conn.send(t, chunk(t, id, 0, i, len(parts), parts[i]))
	}
	b.conn.send(t, streamer.Message{Type: streamer.TypeResponse, RequestID: id, Success: true, Chunks: len(parts)})
	r := wait(t, res)
	require.NoError(t, r.err)
	assert.Equal(t, bigResult, string(r.data))
}

func TestMissingChunk(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	res := start(b.client, context.Background(), "big", nil)
	id := b.conn.next(t).ID
	b.conn.send(t, chunk(t, id, 0, 0, 3, `{"a":`), chunk(t, id, 0, 2, 3, `}`))
	b.conn.send(t, streamer.Message{Type: streamer.TypeResponse, RequestID: id, Success: true, Chunks: 3})
	r := wait(t, res)
	require.ErrorIs(t, r.err, client.ErrInvalidResult)
	assert.Nil(t, r.data)
}

func TestErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})

	t.Run("terminal error event", func(t *testing.T) {
		res := start(b.client, context.Background(), "report", nil)
		id := b.conn.next(t).ID
		e := streamer.Message{Type: streamer.TypeError, RequestID: id, Seq: 2, Error: &streamer.ErrorBody{
			Code: streamer.CodeProcessingFailed, Message: "boom", Details: json.RawMessage(`{"attempts":3}`), Retryable: true,
		}}
		b.conn.send(t, ack(id, 0), progress(id, 1, 10), e)
		r := wait(t, res)
		var se *client.Error
		require.ErrorAs(t, r.err, &se)
		assert.Equal(t, &client.Error{RequestID: id, Code: streamer.CodeProcessingFailed, Message: "boom", Details: json.RawMessage(`{"attempts":3}`), Retryable: true}, se)
		assert.Equal(t, streamer.CodeProcessingFailed, client.CodeOf(r.err))
		assert.Equal(t, []int64{1}, seqs(r.progress))
	})

	t.Run("refused before running", func(t *testing.T) {
		res := start(b.client, context.Background(), "nope", nil)
		id := b.conn.next(t).ID
		b.conn.send(t, errorMsg(id, 0, streamer.CodeInvalidAction))
		r := wait(t, res)
		assert.Equal(t, streamer.CodeInvalidAction, client.CodeOf(r.err))
	})

	t.Run("failed sync response", func(t *testing.T) {
		res := start(b.client, context.Background(), "sync", nil)
		id := b.conn.next(t).ID
		b.conn.send(t, streamer.Message{Type: streamer.TypeResponse, RequestID: id, Error: &streamer.ErrorBody{Code: "MY_CODE", Message: "nope"}})
		r := wait(t, res)
		var se *client.Error
		require.ErrorAs(t, r.err, &se)
		assert.Equal(t, "MY_CODE", se.Code)
		assert.Equal(t, "client: MY_CODE: nope", se.Error())
	})
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	ctx := context.Background()
	_, err := b.client.Request(ctx, "bad action", nil)
	require.ErrorIs(t, err, client.ErrInvalidArgument)
	_, err = b.client.Request(ctx, streamer.ActionPing, nil)
	require.ErrorIs(t, err, client.ErrInvalidArgument)
	_, err = b.client.Request(ctx, "ok", nil, client.WithID("bad/id"))
	require.ErrorIs(t, err, client.ErrInvalidArgument)
	_, err = b.client.Request(ctx, "ok", strings.Repeat("x", streamer.MaxMessageSize))
	require.ErrorIs(t, err, client.ErrTooLarge)
	_, err = b.client.Request(ctx, "ok", make(chan int))
	var ute *json.UnsupportedTypeError
	require.ErrorAs(t, err, &ute)
	_, err = b.client.Resume(ctx, "r-1", -1)
	require.ErrorIs(t, err, client.ErrInvalidArgument)
	_, err = b.client.Status(ctx, "")
	require.ErrorIs(t, err, client.ErrInvalidArgument)
	_, err = b.client.Cancel(ctx, strings.Repeat("a", 129))
	require.ErrorIs(t, err, client.ErrInvalidArgument)

	_, err = client.Dial(ctx, "", client.Options{})
	require.ErrorIs(t, err, client.ErrInvalidArgument)
	_, err = client.Dial(ctx, b.fs.URL, client.Options{MaxReconnects: -1})
	require.ErrorIs(t, err, client.ErrInvalidArgument)

	// An id already in flight is refused; none of the above sent a frame.
	res := start(b.client, ctx, "slow", nil, client.WithID("dup"))
	f := b.conn.next(t)
	assert.Equal(t, "dup", f.ID)
	_, err = b.client.Request(ctx, "slow", nil, client.WithID("dup"))
	require.ErrorIs(t, err, client.ErrInFlight)
	b.conn.send(t, response("dup", `true`))
	require.NoError(t, wait(t, res).err)
}

func TestContextCancelDoesNotCancelOnServer(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	res := start(b.client, ctx, "report", nil)
	id := b.conn.next(t).ID
	b.conn.send(t, ack(id, 0))
	cancel()
	require.ErrorIs(t, wait(t, res).err, context.Canceled)

	// The next frame is the ping, not a cancel.
	pingDone := make(chan error, 1)
	go func() { pingDone <- b.client.Ping(context.Background()) }()
	assert.Equal(t, streamer.ActionPing, b.conn.next(t).Action)
	// Late events of the abandoned request are ignored.
	b.conn.send(t, progress(id, 1, 10), complete(id, 2, `1`))
	b.conn.send(t, streamer.Message{Type: streamer.TypePong, Timestamp: 1})
	require.NoError(t, wait(t, pingDone))

	_, err := b.client.Request(ctx, "report", nil)
	require.ErrorIs(t, err, context.Canceled, "a done ctx sends nothing")
}

func TestStatusAndCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	ctx := context.Background()

	type statusResult struct {
		s   client.Status
		err error
	}
	call := func(fn func(context.Context, string) (client.Status, error), id string) <-chan statusResult {
		out := make(chan statusResult, 1)
		go func() {
			s, err := fn(ctx, id)
			out <- statusResult{s, err}
		}()
		return out
	}

	st := call(b.client.Status, "job-1")
	f := b.conn.next(t)
	assert.Equal(t, streamer.ActionStatus, f.Action)
	assert.Empty(t, f.ID)
	rid, after := f.ref(t)
	assert.Equal(t, "job-1", rid)
	assert.Nil(t, after)
	b.conn.send(t, streamer.Message{
		Type: streamer.TypeStatus, RequestID: "job-1", Action: "report", Status: "failed", Seq: 4, Percentage: 40,
		Message: "m", Error: &streamer.ErrorBody{Code: streamer.CodeTimeout, Message: "late"}, CreatedAt: 1000, UpdatedAt: 2000,
	})
	r := wait(t, st)
	require.NoError(t, r.err)
	assert.Equal(t, client.Status{
		RequestID: "job-1", Action: "report", Status: "failed", Seq: 4, Percentage: 40, Message: "m",
		Error:     &client.Error{RequestID: "job-1", Code: streamer.CodeTimeout, Message: "late"},
		CreatedAt: time.UnixMilli(1000), UpdatedAt: time.UnixMilli(2000),
	}, r.s)

	// Replies for one id are matched first in, first out.
	c1 := call(b.client.Cancel, "job-2")
	assert.Equal(t, streamer.ActionCancel, b.conn.next(t).Action)
	s2 := call(b.client.Status, "job-2")
	assert.Equal(t, streamer.ActionStatus, b.conn.next(t).Action)
	b.conn.send(t,
		streamer.Message{Type: streamer.TypeStatus, RequestID: "job-2", Status: "canceling"},
		streamer.Message{Type: streamer.TypeStatus, RequestID: "job-2", Status: "canceled"})
	assert.Equal(t, "canceling", wait(t, c1).s.Status)
	assert.Equal(t, "canceled", wait(t, s2).s.Status)

	nf := call(b.client.Status, "nobody")
	b.conn.next(t)
	b.conn.send(t, errorMsg("nobody", 0, streamer.CodeNotFound))
	assert.Equal(t, streamer.CodeNotFound, client.CodeOf(wait(t, nf).err))
}

func TestResume(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	out := make(chan result, 1)
	go func() {
		var got []client.Progress
		data, err := b.client.Resume(context.Background(), "job-7", 2, client.WithProgress(func(p client.Progress) { got = append(got, p) }))
		out <- result{data: data, err: err, progress: got}
	}()
	f := b.conn.next(t)
	assert.Equal(t, streamer.ActionResume, f.Action)
	rid, after := f.ref(t)
	assert.Equal(t, "job-7", rid)
	require.NotNil(t, after)
	assert.Equal(t, int64(2), *after)
	b.conn.send(t, progress("job-7", 2, 20), progress("job-7", 3, 30), complete("job-7", 4, `{"ok":true}`))
	r := wait(t, out)
	require.NoError(t, r.err)
	assert.JSONEq(t, `{"ok":true}`, string(r.data))
	assert.Equal(t, []int64{3}, seqs(r.progress))

	// A resume of an unknown request fails with NOT_FOUND.
	go func() {
		_, err := b.client.Resume(context.Background(), "ghost", 0)
		out <- result{err: err}
	}()
	b.conn.next(t)
	b.conn.send(t, errorMsg("ghost", 0, streamer.CodeNotFound))
	assert.Equal(t, streamer.CodeNotFound, client.CodeOf(wait(t, out).err))
}

func TestReconnectResumesAfterLastSeq(t *testing.T) {
	t.Parallel()
	var tokens, connects, disconnects atomic.Int32
	b := setup(t, client.Options{
		TokenFunc: func(context.Context) (string, error) {
			return fmt.Sprintf("tok-%d", tokens.Add(1)), nil
		},
		OnConnect:    func() { connects.Add(1) },
		OnDisconnect: func(error) { disconnects.Add(1) },
	})
	assert.Equal(t, "Bearer tok-1", b.fs.auth(t))

	seen := make(chan int64, 16)
	out := make(chan result, 1)
	go func() {
		var got []client.Progress
		data, err := b.client.Request(context.Background(), "report", nil, client.WithProgress(func(p client.Progress) {
			got = append(got, p)
			seen <- p.Seq
		}))
		out <- result{data: data, err: err, progress: got}
	}()
	id := b.conn.next(t).ID
	b.conn.send(t, ack(id, 0), progress(id, 1, 10), progress(id, 2, 20))
	assert.Equal(t, int64(1), wait(t, seen))
	assert.Equal(t, int64(2), wait(t, seen))
	b.conn.drop()

	assert.Equal(t, "Bearer tok-2", b.fs.auth(t), "TokenFunc is called again")
	conn2 := b.fs.accept(t)
	f := conn2.next(t)
	require.Equal(t, streamer.ActionResume, f.Action)
	rid, after := f.ref(t)
	assert.Equal(t, id, rid)
	require.NotNil(t, after)
	assert.Equal(t, int64(2), *after)

	conn2.send(t, progress(id, 2, 20), progress(id, 3, 30), complete(id, 4, `{"done":true}`))
	r := wait(t, out)
	require.NoError(t, r.err)
	assert.JSONEq(t, `{"done":true}`, string(r.data))
	assert.Equal(t, []int64{1, 2, 3}, seqs(r.progress))
	assert.Equal(t, int32(2), connects.Load())
	assert.Equal(t, int32(1), disconnects.Load())
}

func TestReconnectResendsPendingCalls(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{Token: "static"})
	b.fs.auth(t)
	ctx := context.Background()

	res := start(b.client, ctx, "report", map[string]int{"x": 1}, client.WithID("job-9"))
	first := b.conn.next(t)
	statusDone := make(chan error, 1)
	go func() {
		s, err := b.client.Status(ctx, "other")
		if err == nil && s.Status != "running" {
			err = fmt.Errorf("status %q", s.Status)
		}
		statusDone <- err
	}()
	assert.Equal(t, streamer.ActionStatus, b.conn.next(t).Action)
	pingDone := make(chan error, 1)
	go func() { pingDone <- b.client.Ping(ctx) }()
	assert.Equal(t, streamer.ActionPing, b.conn.next(t).Action)
	b.conn.drop()

	assert.Equal(t, "Bearer static", b.fs.auth(t))
	conn2 := b.fs.accept(t)
	// Unacknowledged request, then status, then ping: all re-sent.
	again := conn2.next(t)
	assert.Equal(t, first, again, "the same frame with the same id")
	st := conn2.next(t)
	assert.Equal(t, streamer.ActionStatus, st.Action)
	rid, _ := st.ref(t)
	assert.Equal(t, "other", rid)
	assert.Equal(t, streamer.ActionPing, conn2.next(t).Action)

	conn2.send(t, streamer.Message{Type: streamer.TypeStatus, RequestID: "other", Status: "running"})
	conn2.send(t, streamer.Message{Type: streamer.TypePong})
	require.NoError(t, wait(t, statusDone))
	require.NoError(t, wait(t, pingDone))

	// The re-send attached to the running request, whose last seq is 2:
	// the client asks for the history.
	conn2.send(t, streamer.Message{Type: streamer.TypeAcknowledgment, RequestID: "job-9", Status: "running", Seq: 2, Percentage: 20, Message: "m"})
	f := conn2.next(t)
	require.Equal(t, streamer.ActionResume, f.Action)
	_, after := f.ref(t)
	require.NotNil(t, after)
	assert.Equal(t, int64(0), *after)
	conn2.send(t, progress("job-9", 3, 30), progress("job-9", 1, 10), progress("job-9", 2, 20),
		progress("job-9", 3, 30), complete("job-9", 4, `"ok"`))
	r := wait(t, res)
	require.NoError(t, r.err)
	assert.Equal(t, `"ok"`, string(r.data))
	assert.Equal(t, []int64{1, 2, 3}, seqs(r.progress))
}

func TestDialUnauthorized(t *testing.T) {
	t.Parallel()
	fs := newFakeServer(t)
	fs.reject.Store(401)
	_, err := client.Dial(context.Background(), fs.URL, client.Options{Token: "expired"})
	require.ErrorIs(t, err, client.ErrUnauthorized)

	fs.reject.Store(0)
	_, err = client.Dial(context.Background(), fs.URL, client.Options{TokenFunc: func(context.Context) (string, error) {
		return "", errors.New("no token")
	}})
	require.Error(t, err)
	require.NotErrorIs(t, err, client.ErrUnauthorized)
}

func TestGiveUpReconnecting(t *testing.T) {
	t.Parallel()

	t.Run("max reconnects", func(t *testing.T) {
		b := setup(t, client.Options{MaxReconnects: 3})
		res := start(b.client, context.Background(), "report", nil)
		b.conn.next(t)
		b.fs.reject.Store(503)
		b.conn.drop()
		r := wait(t, res)
		require.ErrorIs(t, r.err, client.ErrDisconnected)
		_, err := b.client.Request(context.Background(), "report", nil)
		require.ErrorIs(t, err, client.ErrDisconnected)
		require.NoError(t, b.client.Close())
	})

	t.Run("static token refused", func(t *testing.T) {
		b := setup(t, client.Options{Token: "old"})
		res := start(b.client, context.Background(), "report", nil)
		b.conn.next(t)
		b.fs.reject.Store(401)
		b.conn.drop()
		r := wait(t, res)
		require.ErrorIs(t, r.err, client.ErrDisconnected)
		require.ErrorIs(t, r.err, client.ErrUnauthorized)
	})
}

// TestCloseFailsPendingAndLeavesNoGoroutines is not parallel: it counts
// goroutines.
func TestCloseFailsPendingAndLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	fs := newFakeServer(t)
	var disconnectErr atomic.Value
	c, err := client.Dial(context.Background(), fs.URL, client.Options{
		OnDisconnect: func(err error) { disconnectErr.Store(err) },
	})
	require.NoError(t, err)
	conn := fs.accept(t)

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() {
		_, err := c.Request(context.Background(), "report", nil)
		errs <- err
	})
	conn.next(t)
	wg.Go(func() {
		_, err := c.Status(context.Background(), "x")
		errs <- err
	})
	conn.next(t)
	wg.Go(func() { errs <- c.Ping(context.Background()) })
	conn.next(t)

	require.NoError(t, c.Close())
	wg.Wait()
	close(errs)
	for err := range errs {
		require.ErrorIs(t, err, client.ErrClosed)
	}
	require.NoError(t, c.Close(), "Close is idempotent")
	_, err = c.Request(context.Background(), "report", nil)
	require.ErrorIs(t, err, client.ErrClosed)
	require.ErrorIs(t, c.Ping(context.Background()), client.ErrClosed)
	got, _ := disconnectErr.Load().(error)
	require.ErrorIs(t, got, client.ErrClosed)

	fs.Close()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		<-tick.C
	}
}

// TestCloseWhileReconnecting checks that Close stops the backoff loop.
func TestCloseWhileReconnecting(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	res := start(b.client, context.Background(), "report", nil)
	b.conn.next(t)
	b.conn.drop()
	closed := make(chan error, 1)
	go func() { closed <- b.client.Close() }()
	require.NoError(t, wait(t, closed))
	require.ErrorIs(t, wait(t, res).err, client.ErrClosed)
}

// Lifecycle events reach WithLifecycle in seq order with progress; a
// client without it drops them but keeps counting their seqs.
func TestLifecycleEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	var order []string
	var got []client.Lifecycle
	done := make(chan error, 1)
	go func() {
		_, err := b.client.Request(context.Background(), "report", nil,
			client.WithLifecycle(func(l client.Lifecycle) { got = append(got, l); order = append(order, l.Type) }),
			client.WithProgress(func(client.Progress) { order = append(order, "progress") }))
		done <- err
	}()
	id := b.conn.next(t).ID
	b.conn.send(t, ack(id, 0),
		streamer.Message{Type: streamer.TypeStarted, RequestID: id, Seq: 1, Attempt: 1},
		progress(id, 2, 10),
		streamer.Message{Type: streamer.TypeRetrying, RequestID: id, Seq: 3, Attempt: 1, NextAt: 1700000000000, Percentage: 10,
			Error: &streamer.ErrorBody{Code: "UPSTREAM_DOWN", Message: "try later", Retryable: true}},
		streamer.Message{Type: streamer.TypeContinued, RequestID: id, Seq: 4, Attempt: 2, Continuations: 1, Percentage: 10, Message: "item 3/9"},
		complete(id, 5, `{}`))
	require.NoError(t, wait(t, done))
	assert.Equal(t, []string{"started", "progress", "retrying", "continued"}, order, "in seq order")
	require.Len(t, got, 3)
	assert.Equal(t, client.Lifecycle{RequestID: id, Seq: 1, Type: "started", Attempt: 1}, got[0])
	assert.Equal(t, time.UnixMilli(1700000000000), got[1].NextAt)
	require.NotNil(t, got[1].Error)
	assert.Equal(t, "UPSTREAM_DOWN", got[1].Error.Code)
	assert.Equal(t, client.Lifecycle{RequestID: id, Seq: 4, Type: "continued", Attempt: 2, Continuations: 1, Percentage: 10, Message: "item 3/9"}, got[2])

	// Without WithLifecycle: ignored, and no gap is seen (no resume sent).
	res := start(b.client, context.Background(), "report", nil)
	id = b.conn.next(t).ID
	b.conn.send(t, ack(id, 0), streamer.Message{Type: streamer.TypeStarted, RequestID: id, Seq: 1, Attempt: 1},
		progress(id, 2, 50), complete(id, 3, `{}`))
	r := wait(t, res)
	require.NoError(t, r.err)
	require.Equal(t, []int64{2}, seqs(r.progress))
}
