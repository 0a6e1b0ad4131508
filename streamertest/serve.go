package streamertest

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// Server is an app's plugins served by the embedded runtime over a real
// WebSocket on a loopback port: the same server `go run . dev` runs
// (transport/local/devserver, with its bolt store, worker and blob store),
// in the test's process. Create it with [Serve].
type Server struct {
	// URL is the WebSocket URL: ws://127.0.0.1:PORT/ws.
	URL string
	// HTTPURL is the server's base URL (blob downloads are under it).
	HTTPURL string

	secret []byte
}

// serveTimeout bounds how long [Serve] waits for the server to listen, and
// its shutdown; generous, for loaded machines.
const serveTimeout = 60 * time.Second

// Serve starts the embedded runtime on 127.0.0.1 with the plugins that
// plugins builds (an app's plugins.All), its data in a temporary directory
// and a random HS256 secret, and stops it when the test ends. A plugin
// build error fails the test.
//
//	srv := streamertest.Serve(t, plugins.All)
//	c := srv.Dial(t, "alice")
//	res, err := c.Request(ctx, "greet", map[string]string{"name": "Ada"})
func Serve(tb testing.TB, plugins streamer.PluginsFunc) *Server {
	tb.Helper()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		tb.Fatalf("streamertest: listen on loopback: %v", err)
	}
	ready := make(chan devserver.Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- devserver.Run(ctx, devserver.Config{
			Listener: ln,
			DataDir:  tb.TempDir(),
			Secret:   secret,
			Build:    plugins,
			Logger:   zerolog.Nop(),
			Ready:    func(info devserver.Info) { ready <- info },
		})
	}()
	select {
	case info := <-ready:
		tb.Cleanup(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					tb.Errorf("streamertest: server: %v", err)
				}
			case <-time.After(serveTimeout):
				tb.Errorf("streamertest: the server did not stop within %v", serveTimeout)
			}
		})
		return &Server{URL: info.WebSocketURL, HTTPURL: info.URL, secret: secret}
	case err := <-done:
		cancel()
		tb.Fatalf("streamertest: server: %v", err)
	case <-time.After(serveTimeout):
		cancel()
		tb.Fatalf("streamertest: the server did not start within %v", serveTimeout)
	}
	return nil
}

// Token returns a token the server accepts for subject (tenant empty,
// valid an hour).
func (s *Server) Token(tb testing.TB, subject string) string {
	tb.Helper()
	tok, err := middleware.SignHS256(s.secret, middleware.Claims{Subject: subject, TTL: time.Hour})
	if err != nil {
		tb.Fatalf("streamertest: token: %v", err)
	}
	return tok
}

// Dial connects a client as subject, and closes it when the test ends.
func (s *Server) Dial(tb testing.TB, subject string) *client.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), serveTimeout)
	defer cancel()
	c, err := client.Dial(ctx, s.URL, client.Options{Token: s.Token(tb, subject)})
	if err != nil {
		tb.Fatalf("streamertest: dial %s: %v", s.URL, err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}
