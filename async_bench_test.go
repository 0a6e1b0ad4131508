package streamer_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
)

// benchAsyncConfig is the App of BenchmarkAsyncRequest: an async echo on
// the memory store, with a sender that drops the bytes.
func benchAsyncConfig() streamer.Config {
	return streamer.Config{
		Store:            memory.New(),
		Sender:           discard{},
		CoalesceInterval: -1,
		Plugins: []streamer.Plugin{{Name: "bench", Actions: []streamer.Action{{
			Name: "echo", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
				return req.Payload, nil
			}),
		}}}},
	}
}

// benchAsync admits one async echo per iteration through the router and
// runs it with App.Process: admission, claim, started event, terminal
// event, two posts.
func benchAsync(b *testing.B, cfg streamer.Config) {
	app, err := streamer.New(cfg)
	require.NoError(b, err)
	conn := streamer.Conn{ID: "c", Principal: &streamer.Principal{Subject: "bench"}}
	ctx := context.Background()
	frame := make([]byte, 0, 128)
	id := make([]byte, 0, 32)
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n++
		id = strconv.AppendInt(append(id[:0], "req-"...), int64(n), 10)
		frame = append(append(append(frame[:0], `{"action":"echo","id":"`...), id...), `","payload":{"message":"hello","n":42}}`...)
		if err := app.HandleMessage(ctx, conn, frame, false); err != nil {
			b.Fatal(err)
		}
		if err := app.Process(ctx, storage.Key{Subject: "bench", ID: string(id)}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAsyncRequest(b *testing.B) { benchAsync(b, benchAsyncConfig()) }
