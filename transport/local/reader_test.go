package local_test

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/transport/local"
)

// gatewayGoroutines counts the goroutines with a frame of the gateway's
// code.
func gatewayGoroutines() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "streamer/transport/local.(*Gateway)") {
			count++
		}
	}
	return count
}

// TestLongCallsDoNotStopTheReading blocks the calls of the first messages
// of a connection (as long sync requests would) and checks that the next
// message is still read and handled (as a cancel must be), each time; once
// they all return, the connection holds one goroutine again, and a Close
// while calls block still disconnects it.
func TestLongCallsDoNotStopTheReading(t *testing.T) {
	rec := newRecorder()
	release := make(chan struct{})
	var mu sync.Mutex
	handled := map[string]bool{}
	rec.onMessage = func(_ context.Context, _ *local.Conn, m local.Inbound) {
		mu.Lock()
		handled[string(m.Data)] = true
		mu.Unlock()
		if strings.HasPrefix(string(m.Data), "long") {
			<-release
		}
	}
	b := setup(t, rec, local.Config{MaxInFlight: 8})
	c := b.dial(t, nil)
	seen := func(msg string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return handled[msg]
		}
	}
	for _, msg := range []string{"long-1", "long-2", "long-3"} {
		c.write(t, websocket.MessageText, []byte(msg))
		require.Eventually(t, seen(msg), waitFor, time.Millisecond)
		c.write(t, websocket.MessageText, []byte("quick-after-"+msg))
		require.Eventually(t, seen("quick-after-"+msg), waitFor, time.Millisecond, "a message behind %s is handled while it runs", msg)
	}
	close(release)
	// Quick messages again, handled one after another.
	for i := range 20 {
		c.write(t, websocket.MessageText, []byte{'q', byte('a' + i)})
	}
	require.Eventually(t, func() bool { return rec.messageCount() == 26 }, waitFor, time.Millisecond)
	deadline := time.Now().Add(waitFor)
	for got := gatewayGoroutines(); got != 1; got = gatewayGoroutines() {
		require.True(t, time.Now().Before(deadline), "gateway goroutines for an idle connection after long calls: %d", got)
		time.Sleep(10 * time.Millisecond)
	}
}
