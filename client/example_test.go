package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/coder/websocket"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
)

// exampleServer is a tiny in-process server speaking the protocol: "greet"
// runs asynchronously, with one progress event; status reports succeeded.
func exampleServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer func() { _ = c.CloseNow() }()
		ctx := context.Background()
		send := func(m streamer.Message) {
			b, _ := m.MarshalJSON()
			_ = c.Write(ctx, websocket.MessageText, b)
		}
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			f, ferr := streamer.DecodeFrame(data)
			if ferr != nil {
				continue
			}
			switch f.Action {
			case "greet":
				var p struct{ Name string }
				_ = json.Unmarshal(f.Payload, &p)
				result, _ := json.Marshal(map[string]string{"hello": p.Name})
				send(streamer.Message{Type: streamer.TypeAcknowledgment, RequestID: f.ID, Status: "queued"})
				send(streamer.Message{Type: streamer.TypeProgress, RequestID: f.ID, Seq: 1, Percentage: 50, Message: "halfway"})
				send(streamer.Message{Type: streamer.TypeComplete, RequestID: f.ID, Seq: 2, Result: result})
			case streamer.ActionStatus:
				var p struct {
					RequestID string `json:"request_id"`
				}
				_ = json.Unmarshal(f.Payload, &p)
				send(streamer.Message{Type: streamer.TypeStatus, RequestID: p.RequestID, Action: "greet",
					Status: "succeeded", Seq: 2, Percentage: 100, Result: json.RawMessage(`{"hello":"Ada"}`)})
			}
		}
	}))
}

func Example() {
	srv := exampleServer()
	defer srv.Close()
	ctx := context.Background()

	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), client.Options{Token: "a-jwt"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()

	result, err := c.Request(ctx, "greet", map[string]string{"name": "Ada"},
		client.WithID("greet-1"),
		client.WithProgress(func(p client.Progress) {
			fmt.Printf("progress %v%%: %s\n", p.Percentage, p.Message)
		}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(result))
	// Output:
	// progress 50%: halfway
	// {"hello":"Ada"}
}

func ExampleClient_Status() {
	srv := exampleServer()
	defer srv.Close()
	ctx := context.Background()

	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), client.Options{Token: "a-jwt"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = c.Close() }()

	s, err := c.Status(ctx, "greet-1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Status, s.Percentage, string(s.Result))
	// Output:
	// succeeded 100 {"hello":"Ada"}
}
