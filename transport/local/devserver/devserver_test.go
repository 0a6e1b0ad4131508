package devserver_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

func greeter() streamer.Plugin {
	return streamer.Plugin{Name: "greeter", Actions: []streamer.Action{{
		Name:    "greet",
		Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			_ = rep.Report(ctx, streamer.Update{Percentage: 50, Message: "thinking"})
			return "hello " + req.Principal.Subject, nil
		}),
	}}}
}

// start runs a server until the test ends and returns its info.
func start(t *testing.T, cfg devserver.Config) devserver.Info {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan devserver.Info, 1)
	done := make(chan error, 1)
	cfg.Addr = "127.0.0.1:0"
	cfg.Ready = func(i devserver.Info) { ready <- i }
	go func() { done <- devserver.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	select {
	case info := <-ready:
		return info
	case err := <-done:
		t.Fatalf("devserver stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("devserver not ready in 10s")
	}
	return devserver.Info{}
}

func TestRunServesPlugins(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	info := start(t, devserver.Config{DataDir: dir, Plugins: []streamer.Plugin{greeter()}})
	require.FileExists(t, filepath.Join(dir, "jwt-secret"))
	require.FileExists(t, filepath.Join(dir, "streamer.db"))
	require.Equal(t, filepath.Join(dir, "jwt-secret"), info.SecretFile)

	c, err := client.Dial(context.Background(), info.WebSocketURL, client.Options{Token: info.Token})
	require.NoError(t, err)
	defer c.Close() //nolint:errcheck // test cleanup
	var seen []float64
	res, err := c.Request(context.Background(), "greet", nil, client.WithProgress(func(p client.Progress) { seen = append(seen, p.Percentage) }))
	require.NoError(t, err)
	require.JSONEq(t, `"hello dev"`, string(res))
	require.Equal(t, []float64{50}, seen)
}

func TestRunWithMemoryStoreAndSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	info := start(t, devserver.Config{DataDir: dir, Store: memory.New(), Secret: []byte("0123456789abcdef0123456789abcdef"), Plugins: []streamer.Plugin{greeter()}})
	require.Empty(t, info.SecretFile)
	_, err := os.Stat(filepath.Join(dir, "streamer.db"))
	require.ErrorIs(t, err, os.ErrNotExist, "no bolt file with a given store")
	_, err = client.Dial(context.Background(), info.WebSocketURL, client.Options{Token: "not-a-jwt"})
	require.ErrorIs(t, err, client.ErrUnauthorized)
}

func TestRunRefusesBadConfig(t *testing.T) {
	t.Parallel()
	err := devserver.Run(context.Background(), devserver.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Secret: []byte("short")})
	require.ErrorContains(t, err, "Secret")

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "jwt-secret"), []byte("tiny\n"), 0o600))
	err = devserver.Run(context.Background(), devserver.Config{Addr: "127.0.0.1:0", DataDir: dir})
	require.ErrorContains(t, err, "jwt-secret")

	err = devserver.Run(context.Background(), devserver.Config{Addr: "256.0.0.1:99999", DataDir: t.TempDir()})
	require.ErrorContains(t, err, "Addr")

	dup := devserver.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Plugins: []streamer.Plugin{greeter(), greeter()}}
	require.ErrorContains(t, devserver.Run(context.Background(), dup), "registered by both")
}
