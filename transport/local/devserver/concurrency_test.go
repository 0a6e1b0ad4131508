package devserver_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// TestConcurrencyReachesTheWorker: with Concurrency 4 one subject runs
// one request at a time (a quarter of 4), where the default (64, so 16)
// runs both of its requests at once.
func TestConcurrencyReachesTheWorker(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		concurrency, want int
	}{"Concurrency 4": {4, 1}, "default": {0, 2}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var started atomic.Int32
			release := make(chan struct{})
			blocker := streamer.Plugin{Name: "blocker", Actions: []streamer.Action{{
				Name:    "block",
				Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
				Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
					started.Add(1)
					select {
					case <-release:
					case <-ctx.Done():
					}
					return "done", nil
				}),
			}}}
			info := start(t, devserver.Config{Store: memory.New(), Secret: []byte("0123456789abcdef0123456789abcdef"), DataDir: t.TempDir(), Plugins: []streamer.Plugin{blocker}, Concurrency: tc.concurrency})
			c, err := client.Dial(context.Background(), info.WebSocketURL, client.Options{Token: info.Token})
			require.NoError(t, err)
			defer c.Close() //nolint:errcheck // test cleanup
			errs := make(chan error, 2)
			for range 2 {
				go func() {
					_, err := c.Request(context.Background(), "block", nil)
					errs <- err
				}()
			}
			require.Eventually(t, func() bool { return started.Load() == int32(tc.want) }, 30*time.Second, 10*time.Millisecond)
			time.Sleep(300 * time.Millisecond) // room for a wrong second start
			require.Equal(t, int32(tc.want), started.Load())
			close(release)
			for range 2 {
				require.NoError(t, <-errs)
			}
			require.Equal(t, int32(2), started.Load())
		})
	}
}

func TestRunRefusesNegativeConcurrency(t *testing.T) {
	t.Parallel()
	err := devserver.Run(context.Background(), devserver.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Concurrency: -1})
	require.ErrorContains(t, err, "Concurrency")
}
