package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/internal/loadpush"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/transport/local"
)

// floorMaxPushes bounds the push jobs one connection of the floor runs at
// once.
const floorMaxPushes = 1000

// floorHandler is the bare floor of `streamer load`: a coder/websocket
// server that checks the JWT at connect, answers every frame of an action
// other than loadpush with a response echoing its payload, and runs
// loadpush as the dev stack does (an acknowledgment, the progress events
// of loadpush.Run with their seq and metadata, a complete), with nothing
// stored and nothing else. It is what the dev stack is measured against.
type floorHandler struct {
	auth *middleware.JWT
}

func (h *floorHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := h.auth.Authenticate(r.Context(), middleware.TokenFromRequest(r.Header, r.URL.Query())); err != nil {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow() //nolint:errcheck // best effort
	c.SetReadLimit(streamer.MaxMessageSize)
	ctx, cancel := context.WithCancel(r.Context())
	var jobs sync.WaitGroup
	defer jobs.Wait()
	defer cancel()
	slots := make(chan struct{}, floorMaxPushes)
	send := func(m *streamer.Message) error {
		out, _ := json.Marshal(m)
		return c.Write(ctx, websocket.MessageText, out)
	}
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		var f struct {
			Action  string          `json:"action"`
			ID      string          `json:"id"`
			Payload json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		if f.Action != loadpush.Action {
			if send(&streamer.Message{Type: streamer.TypeResponse, RequestID: f.ID, Success: true, Data: f.Payload}) != nil {
				return
			}
			continue
		}
		var p loadpush.Payload
		if err := json.Unmarshal(f.Payload, &p); err != nil || p.Check() != nil {
			if send(&streamer.Message{Type: streamer.TypeError, RequestID: f.ID, Error: &streamer.ErrorBody{Code: streamer.CodeValidation, Message: "bad loadpush payload"}}) != nil {
				return
			}
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			if send(&streamer.Message{Type: streamer.TypeError, RequestID: f.ID, Error: &streamer.ErrorBody{Code: streamer.CodeQuotaExceeded, Message: "too many pushes on this connection"}}) != nil {
				return
			}
			continue
		}
		if send(&streamer.Message{Type: streamer.TypeAcknowledgment, RequestID: f.ID, Status: "queued"}) != nil {
			return
		}
		jobs.Add(1)
		go func() {
			defer jobs.Done()
			defer func() { <-slots }()
			n := p.Events()
			seq := int64(0)
			err := loadpush.Run(ctx, p, func(i int, md map[string]string) error {
				seq++
				return send(&streamer.Message{Type: streamer.TypeProgress, RequestID: f.ID, Seq: seq, Percentage: float64(100*i) / float64(n), Metadata: md, Timestamp: time.Now().UnixMilli()})
			})
			if err == nil {
				seq++
				_ = send(&streamer.Message{Type: streamer.TypeComplete, RequestID: f.ID, Seq: seq, Result: json.RawMessage(fmt.Sprintf(`{"events":%d}`, n)), Timestamp: time.Now().UnixMilli()})
			}
		}()
	}
}

// runFloor serves the bare floor on addr (loopback only) until ctx is
// done: WebSocket on every path but /debug/pprof/, where it serves its
// profiles. It prints "websocket: URL" once it listens.
func runFloor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("load floor", stderr)
	addr := fs.String("addr", "127.0.0.1:0", "loopback address to listen on (port 0 picks a free one)")
	dataDir := fs.String("data-dir", ".streamer", "data dir of `streamer dev`, whose jwt-secret checks tokens when $STREAMER_JWT_SECRET is unset")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if !loopbackAddr(*addr) {
		return usageError{fmt.Sprintf("--addr %s: the floor listens on a loopback address only", *addr)}
	}
	secret, _, err := secretFor(*dataDir)
	if err != nil {
		return err
	}
	if secret == nil {
		return usageError{"no secret: set STREAMER_JWT_SECRET or point --data-dir at the data dir of `streamer dev`"}
	}
	auth, err := middleware.NewJWT(middleware.JWTConfig{Secret: secret})
	if err != nil {
		return err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", *addr)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", *addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(pprofPrefix, pprofHandler())
	mux.Handle("/", &floorHandler{auth: auth})
	srv := local.NewHTTPServer(mux, 0)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "Streamer load floor (bare coder/websocket server)\n  websocket:  ws://%s/ws\n", ln.Addr())
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
