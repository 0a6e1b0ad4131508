package devserver

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
)

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var echo = streamer.Plugin{Name: "echo", Actions: []streamer.Action{{
	Name:    "echo",
	Options: streamer.ActionOptions{Mode: streamer.ModeSync},
	Handler: streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
		return req.Payload, nil
	}),
}}}

// serve runs the server with cfg, sends an echo, an unknown action and a
// bad frame, and stops it.
func serve(t *testing.T, cfg Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Info, 1)
	done := make(chan error, 1)
	cfg.Addr, cfg.DataDir = "127.0.0.1:0", t.TempDir()
	cfg.Plugins = []streamer.Plugin{echo}
	cfg.Ready = func(i Info) { ready <- i }
	go func() { done <- Run(ctx, cfg) }()
	var info Info
	select {
	case info = <-ready:
	case err := <-done:
		t.Fatalf("devserver stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("devserver not ready in 10s")
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	c, err := client.Dial(cctx, info.WebSocketURL, client.Options{Token: info.Token})
	require.NoError(t, err)
	_, err = c.Request(cctx, "echo", 1)
	require.NoError(t, err)
	_, err = c.Request(cctx, "nope", nil)
	require.Equal(t, streamer.CodeInvalidAction, client.CodeOf(err))
	require.NoError(t, c.Close())

	ws, _, err := websocket.Dial(cctx, info.WebSocketURL+"?token="+info.Token, nil)
	require.NoError(t, err)
	require.NoError(t, ws.Write(cctx, websocket.MessageText, []byte(`{"id":"bad-1"}`)))
	_, reply, err := ws.Read(cctx)
	require.NoError(t, err)
	require.Contains(t, string(reply), streamer.CodeInvalidMessage)
	_ = ws.Close(websocket.StatusNormalClosure, "")

	cancel()
	require.NoError(t, <-done)
}

// Not parallel: it swaps logOutput.
func TestDefaultLoggerIsInfoOnStderr(t *testing.T) {
	var out lockedBuffer
	logOutput = &out
	defer func() { logOutput = stderrForTests }()
	serve(t, Config{})
	logs := out.String()
	require.Contains(t, logs, "INF", "info lines by default")
	require.Contains(t, logs, "shutting down")
	require.NotContains(t, logs, "DBG", "no debug lines by default")
	require.NotContains(t, logs, "frame refused")
}

func TestNopLoggerIsQuiet(t *testing.T) {
	var out lockedBuffer
	logOutput = &out
	defer func() { logOutput = stderrForTests }()
	serve(t, Config{Logger: zerolog.Nop()})
	require.Empty(t, out.String())
}

func TestDebugLogsRefusedFramesWithTheirCode(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	serve(t, Config{Logger: zerolog.New(&out).Level(zerolog.DebugLevel)})
	var refused []string
	for l := range strings.Lines(out.String()) {
		if strings.Contains(l, "frame refused") {
			refused = append(refused, l)
		}
	}
	require.Len(t, refused, 2, out.String())
	require.Contains(t, refused[0], `"code":"INVALID_ACTION"`)
	require.Contains(t, refused[0], `"level":"debug"`)
	require.Contains(t, refused[1], `"code":"INVALID_MESSAGE"`)
	require.Contains(t, refused[1], `"request_id":"bad-1"`)
}

var stderrForTests = logOutput
