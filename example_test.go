package streamer_test

import (
	"context"
	"fmt"
	"regexp"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport"
)

// printSender prints every message the App sends, without timestamps.
var printSender = transport.SenderFunc(func(_ context.Context, _, connID string, data []byte) error {
	fmt.Printf("→ %s: %s\n", connID, timestamps.ReplaceAll(data, nil))
	return nil
})

var timestamps = regexp.MustCompile(`,"timestamp":\d+`)

// A synchronous action answers at once with a response.
func ExampleNew() {
	hello := streamer.Plugin{Name: "greeter", Actions: []streamer.Action{{
		Name:    "hello",
		Options: streamer.ActionOptions{Mode: streamer.ModeSync},
		Handler: streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
			return map[string]string{"greeting": "hello, " + req.Principal.Subject}, nil
		}),
	}}}
	app, err := streamer.New(streamer.Config{Store: memory.New(), Sender: printSender, Plugins: []streamer.Plugin{hello}})
	if err != nil {
		panic(err)
	}
	conn := streamer.Conn{ID: "conn-1", Principal: &streamer.Principal{Subject: "alice"}}
	_ = app.HandleMessage(context.Background(), conn, []byte(`{"action":"hello","id":"r1"}`), false)
	_ = app.HandleMessage(context.Background(), conn, []byte(`{"action":"bye","id":"r2"}`), false)
	// Output:
	// → conn-1: {"type":"response","request_id":"r1","success":true,"data":{"greeting":"hello, alice"}}
	// → conn-1: {"type":"error","request_id":"r2","error":{"code":"INVALID_ACTION","message":"no handler is registered for action \"bye\"; available: hello","details":{"available":["hello"]}}}
}

type resizeIn struct {
	Width  int `json:"width" validate:"required,min=1,max=4096"`
	Height int `json:"height" validate:"required,min=1,max=4096"`
}

type resizeOut struct {
	Pixels int `json:"pixels"`
}

// Typed handlers get a decoded, validated payload. The same handler runs
// synchronously or, as here, asynchronously: the request is stored, a
// worker runs it, and its progress and result are streamed as events.
func ExampleTyped() {
	resize := streamer.Typed(func(ctx context.Context, in resizeIn, rep streamer.Reporter) (resizeOut, error) {
		_ = rep.Report(ctx, streamer.Update{Percentage: 50, Message: "resizing"})
		return resizeOut{Pixels: in.Width * in.Height}, nil
	})
	done := make(chan struct{})
	sender := transport.SenderFunc(func(ctx context.Context, endpoint, connID string, data []byte) error {
		_ = printSender(ctx, endpoint, connID, data)
		if string(data[:17]) == `{"type":"complete` {
			close(done)
		}
		return nil
	})
	app, err := streamer.New(streamer.Config{
		Store: memory.New(), Sender: sender,
		Plugins: []streamer.Plugin{{Name: "images", Actions: []streamer.Action{{
			Name: "resize", Handler: resize, Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		}}}},
	})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	worker := make(chan error)
	go func() { worker <- app.Run(ctx, 1) }()

	conn := streamer.Conn{ID: "conn-1", Principal: &streamer.Principal{Subject: "alice"}}
	_ = app.HandleMessage(ctx, conn, []byte(`{"action":"resize","id":"r1","payload":{"width":0,"height":10}}`), false)
	_ = app.HandleMessage(ctx, conn, []byte(`{"action":"resize","id":"r2","payload":{"width":640,"height":480}}`), false)
	<-done
	stop()
	if err := <-worker; err != nil {
		panic(err)
	}
	// Output:
	// → conn-1: {"type":"error","request_id":"r1","error":{"code":"VALIDATION_ERROR","message":"payload failed validation","details":[{"field":"width","rule":"required","message":"width is required"}]}}
	// → conn-1: {"type":"acknowledgment","request_id":"r2","status":"queued","seq":0}
	// → conn-1: {"type":"started","request_id":"r2","seq":1,"attempt":1,"percentage":0,"message":""}
	// → conn-1: {"type":"progress","request_id":"r2","seq":2,"percentage":50,"message":"resizing"}
	// → conn-1: {"type":"complete","request_id":"r2","seq":3,"result":{"pixels":307200}}
}
