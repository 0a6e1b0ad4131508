package streamer_test

import (
	"context"
	"fmt"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/progress/progresstest"
	"github.com/streamer-go/streamer/storage/memory"
)

// Past its token's expiry plus the leeway, every frame of a connection is
// refused with UNAUTHORIZED, the reserved actions too. A gateway that can
// close connections on its own closes it at TokenDeadline.
func ExampleApp_TokenDeadline() {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clk := progresstest.New(start)
	app, err := streamer.New(streamer.Config{
		Store: memory.New(), Sender: printSender, Clock: clk, TokenLeeway: 10 * time.Second,
	})
	if err != nil {
		panic(err)
	}
	p := &streamer.Principal{Subject: "alice", ExpiresAt: start.Add(time.Minute)}
	fmt.Println("deadline:", app.TokenDeadline(p).Format(time.TimeOnly))
	conn := streamer.Conn{ID: "conn-1", Principal: p}
	_ = app.HandleMessage(context.Background(), conn, []byte(`{"action":"ping","id":"p1"}`), false)
	clk.Advance(time.Minute + 11*time.Second)
	_ = app.HandleMessage(context.Background(), conn, []byte(`{"action":"ping","id":"p2"}`), false)
	// Output:
	// deadline: 12:01:10
	// → conn-1: {"type":"pong","request_id":"p1"}
	// → conn-1: {"type":"error","request_id":"p2","error":{"code":"UNAUTHORIZED","message":"the token has expired; reconnect with a new token"}}
}
