package apigateway_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/coder/websocket"

	"github.com/streamer-go/streamer/transport"
	"github.com/streamer-go/streamer/transport/apigateway"
	"github.com/streamer-go/streamer/transport/local"
)

// inbox is a local.Handler that accepts every connection and reports the
// connection of each inbound message on ids.
type inbox struct {
	ids chan string
}

func (h *inbox) Connect(context.Context, *local.Conn) error { return nil }
func (h *inbox) Message(_ context.Context, c *local.Conn, _ local.Inbound) {
	h.ids <- c.ID
}
func (h *inbox) Disconnect(context.Context, *local.Conn) {}

// Example answers a client of the local gateway, whose Management API
// mimics API Gateway's, through the Management API. In a Lambda, AWS comes
// from config.LoadDefaultConfig and the endpoint from EndpointFromRequest.
func Example() {
	h := &inbox{ids: make(chan string, 1)}
	gw, err := local.New(local.Config{Handler: h})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", gw)
	mux.Handle("/", gw.Management())
	srv := httptest.NewServer(mux) // 127.0.0.1
	defer srv.Close()
	defer func() { _ = gw.Close(context.Background()) }()

	sender, err := apigateway.New(apigateway.Config{
		Endpoint: srv.URL,
		AWS:      aws.Config{Region: "us-east-1", Credentials: aws.AnonymousCredentials{}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	ctx := context.Background()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = ws.CloseNow() }()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"action":"hello"}`)); err != nil {
		fmt.Println(err)
		return
	}
	id := <-h.ids // the connection that sent the message

	if err := sender.Send(ctx, "", id, []byte(`{"type":"progress","seq":1}`)); err != nil {
		fmt.Println(err)
		return
	}
	_, msg, err := ws.Read(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(msg))

	err = sender.Send(ctx, "", "no-such-connection", []byte(`{}`))
	fmt.Println(errors.Is(err, transport.ErrGone))
	// Output:
	// {"type":"progress","seq":1}
	// true
}

func ExampleEndpointFromRequest() {
	// From the WebSocket event's RequestContext.DomainName and Stage.
	fmt.Println(apigateway.EndpointFromRequest("abc123.execute-api.us-east-1.amazonaws.com", "prod"))
	// Output:
	// https://abc123.execute-api.us-east-1.amazonaws.com/prod
}
