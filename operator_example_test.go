package streamer_test

import (
	"context"
	"fmt"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport"
)

// An operator cancels a request that no processor holds: it is finished
// at once, with one CANCELED terminal event.
func ExampleApp_Cancel() {
	wait := streamer.Plugin{Name: "w", Actions: []streamer.Action{{
		Name:    "wait",
		Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return "done", nil }),
	}}}
	nop := transport.SenderFunc(func(context.Context, string, string, []byte) error { return nil })
	store := memory.New()
	app, err := streamer.New(streamer.Config{Store: store, Sender: nop, Plugins: []streamer.Plugin{wait}})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	alice := streamer.Principal{Subject: "alice"}
	_, _ = app.Submit(ctx, alice, "wait", nil, streamer.SubmitOptions{IdempotencyKey: "w1", NotBefore: time.Now().Add(time.Hour)})
	k := storage.Key{Subject: "alice", ID: "w1"}
	r, err := app.Cancel(ctx, k)
	fmt.Println(r.Status, r.Error.Code, err)
	evs, _ := store.ReadEvents(ctx, k, 0, 0)
	fmt.Println(len(evs), evs[len(evs)-1].Type)
	// Output:
	// canceled CANCELED <nil>
	// 1 error
}
