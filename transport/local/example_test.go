package local_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/coder/websocket"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/transport"
	"github.com/streamer-go/streamer/transport/local"
)

// echoHandler accepts connections that carry a user, and echoes every text
// message back through a transport.Sender.
type echoHandler struct {
	sender transport.Sender
}

func (h *echoHandler) Connect(_ context.Context, c *local.Conn) error {
	user := c.Request.URL.Query().Get("user")
	if user == "" {
		return fmt.Errorf("no user: %w", streamer.ErrUnauthorized)
	}
	c.Value = user
	return nil
}

func (h *echoHandler) Message(ctx context.Context, c *local.Conn, m local.Inbound) {
	reply := fmt.Sprintf("%s said %s", c.Value, m.Data)
	if m.Binary {
		reply = `{"type":"error","error":{"code":"INVALID_MESSAGE","message":"binary frames are not supported"}}`
	}
	_ = h.sender.Send(ctx, "", c.ID, []byte(reply))
}

func (h *echoHandler) Disconnect(context.Context, *local.Conn) {}

func Example() {
	h := &echoHandler{}
	gw, err := local.New(local.Config{Handler: h})
	if err != nil {
		fmt.Println(err)
		return
	}
	h.sender = gw // the gateway is the transport.Sender

	mux := http.NewServeMux()
	mux.Handle("/ws", gw)
	mux.Handle("/", gw.Management()) // POST/GET/DELETE /@connections/{id}
	srv := httptest.NewServer(mux)   // 127.0.0.1
	defer srv.Close()
	defer func() { _ = gw.Close(context.Background()) }()

	ctx := context.Background()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"

	_, resp, err := websocket.Dial(ctx, url, nil)
	if err == nil {
		fmt.Println("unexpected upgrade")
		return
	}
	fmt.Println("without a user:", resp.StatusCode)

	conn, _, err := websocket.Dial(ctx, url+"?user=alice", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = conn.CloseNow() }()
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"action":"ping"}`)); err != nil {
		fmt.Println(err)
		return
	}
	_, reply, err := conn.Read(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(reply))
	_ = conn.Close(websocket.StatusNormalClosure, "")
	// Output:
	// without a user: 401
	// alice said {"action":"ping"}
}

func ExampleGateway_Management() {
	h := &echoHandler{}
	gw, err := local.New(local.Config{Handler: h})
	if err != nil {
		fmt.Println(err)
		return
	}
	h.sender = gw
	srv := httptest.NewServer(gw.Management())
	defer srv.Close()
	defer func() { _ = gw.Close(context.Background()) }()

	resp, err := http.Post(srv.URL+"/prod/@connections/unknown", "application/json", strings.NewReader(`{}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"))
	// Output:
	// 410 GoneException
}
