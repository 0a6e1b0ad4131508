package devserver_test

import (
	"context"
	"fmt"
	"os"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// Run serves your own plugins on this machine, as `streamer dev` does with
// the demo ones.
func Example() {
	hello := streamer.Plugin{Name: "hello", Actions: []streamer.Action{{
		Name: "hello",
		Handler: streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
			return "hello, " + req.Principal.Subject, nil
		}),
	}}}
	dir, err := os.MkdirTemp("", "streamer-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir) //nolint:errcheck // best effort
	ctx, stop := context.WithCancel(context.Background())
	ready := make(chan devserver.Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- devserver.Run(ctx, devserver.Config{
			Addr: "127.0.0.1:0", DataDir: dir, Plugins: []streamer.Plugin{hello},
			Ready: func(i devserver.Info) { ready <- i },
		})
	}()
	info := <-ready
	c, err := client.Dial(ctx, info.WebSocketURL, client.Options{Token: info.Token})
	if err != nil {
		panic(err)
	}
	res, err := c.Request(ctx, "hello", nil)
	fmt.Println(string(res), err)
	_ = c.Close()
	stop()
	fmt.Println(<-done)
	// Output:
	// "hello, dev" <nil>
	// <nil>
}
