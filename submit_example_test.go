package streamer_test

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport"
)

// Server code submits a request for alice, due in 50 ms; a connection of
// alice follows it with resume, and gets its events once it runs.
func ExampleApp_Submit() {
	remind := streamer.Plugin{Name: "reminders", Actions: []streamer.Action{{
		Name:    "remind",
		Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			_ = rep.Report(ctx, streamer.Update{Percentage: 50, Message: "halfway"})
			return "reminded " + req.Principal.Subject, nil
		}),
	}}}
	ended := make(chan struct{})
	sender := transport.SenderFunc(func(ctx context.Context, endpoint, connID string, data []byte) error {
		err := printSender(ctx, endpoint, connID, data)
		if bytes.Contains(data, []byte(`"type":"complete"`)) {
			close(ended)
		}
		return err
	})
	app, err := streamer.New(streamer.Config{Store: memory.New(), Sender: sender, Plugins: []streamer.Plugin{remind}})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	alice := streamer.Principal{Subject: "alice"}
	res, err := app.Submit(ctx, alice, "remind", nil, streamer.SubmitOptions{
		NotBefore: time.Now().Add(50 * time.Millisecond), IdempotencyKey: "remind-1",
	})
	fmt.Println(res.ID, res.Status, err)

	conn := streamer.Conn{ID: "conn-1", Principal: &alice}
	_ = app.HandleMessage(ctx, conn, []byte(`{"action":"resume","payload":{"request_id":"remind-1"}}`), false)

	// The embedded worker, started here so that the output is in order; it
	// finds the request in the store, and runs it once due.
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, 0) }()
	<-ended
	stop()
	fmt.Println(<-done)
	// Output:
	// remind-1 queued <nil>
	// → conn-1: {"type":"started","request_id":"remind-1","seq":1,"attempt":1,"percentage":0,"message":""}
	// → conn-1: {"type":"progress","request_id":"remind-1","seq":2,"percentage":50,"message":"halfway"}
	// → conn-1: {"type":"complete","request_id":"remind-1","seq":3,"result":"reminded alice"}
	// <nil>
}
