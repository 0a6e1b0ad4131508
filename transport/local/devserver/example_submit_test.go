package devserver_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// Your own code submits work on behalf of a principal through the App that
// Ready hands over: here an HTTP handler served next to the WebSocket
// starts a request due in a second, and a client of that principal follows
// it to its result with resume.
func ExampleInfo_submit() {
	later := streamer.Plugin{Name: "later", Actions: []streamer.Action{{
		Name:    "hello_later",
		Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
			return "hello, " + req.Principal.Subject, nil
		}),
	}}}
	var app *streamer.App // set by Ready, before any handler runs
	start := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Authenticate the caller your own way; the principal is who the
		// request belongs to: the clients whose tokens carry its subject
		// (and tenant) can follow it.
		p := streamer.Principal{Subject: "dev"}
		res, err := app.Submit(r.Context(), p, "hello_later", nil, streamer.SubmitOptions{
			NotBefore:      time.Now().Add(time.Second),
			IdempotencyKey: "hello-" + time.Now().UTC().Format("2006-01-02"), // once a day
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest) // a *streamer.Error: its Code says why
			return
		}
		_, _ = io.WriteString(w, res.ID)
	})

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
			Addr: "127.0.0.1:0", DataDir: dir, Plugins: []streamer.Plugin{later},
			Handlers: map[string]http.Handler{"POST /hello": start},
			Ready:    func(i devserver.Info) { app = i.App; ready <- i },
		})
	}()
	info := <-ready

	resp, err := http.Post(info.URL+"/hello", "text/plain", strings.NewReader("")) //nolint:noctx // an example
	if err != nil {
		panic(err)
	}
	id, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()

	c, err := client.Dial(ctx, info.WebSocketURL, client.Options{Token: info.Token}) // subject "dev"
	if err != nil {
		panic(err)
	}
	res, err := c.Resume(ctx, string(id), 0)
	fmt.Println(string(res), err)
	_ = c.Close()
	stop()
	fmt.Println(<-done)
	// Output:
	// "hello, dev" <nil>
	// <nil>
}
