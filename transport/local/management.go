package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/streamer-go/streamer/transport"
)

// Management returns API Gateway's Management API for this gateway, as
// aws-sdk-go-v2's apigatewaymanagementapi client expects it (restjson1):
//
//   - POST /@connections/{id}: the body is the message; 200 with an empty
//     body.
//   - GET /@connections/{id}: 200 with {"connectedAt", "lastActiveAt",
//     "identity": {"sourceIp", "userAgent"}}, times in RFC 3339.
//     lastActiveAt is the time of the last inbound message (or of the
//     connect).
//   - DELETE /@connections/{id}: closes the connection (1000); 204.
//
// Each path is also served under a stage prefix, /{stage}/@connections/{id},
// as in API Gateway's https://{api}.execute-api.{region}.amazonaws.com/{stage}
// endpoints. An unknown or closed connection is 410 GoneException, a
// message larger than Config.MaxMessageSize is 413
// PayloadTooLargeException, and another method is 405. Errors carry the
// X-Amzn-Errortype header and a {"message": "..."} body, as API Gateway's
// do. The handler performs no authentication: serve it only to trusted
// callers, on a listener of its own ([ListenManagement]: a loopback address
// apart from the WebSocket's), and answer /@connections/ on the WebSocket
// listener with [ManagementRefused], as devserver and awslocal do.
func (g *Gateway) Management() http.Handler {
	mux := http.NewServeMux()
	for _, prefix := range []string{"", "/{stage}"} {
		p := prefix + "/@connections/{id}"
		mux.HandleFunc("POST "+p, g.postToConnection)
		mux.HandleFunc("GET "+p, g.getConnection)
		mux.HandleFunc("DELETE "+p, g.deleteConnection)
	}
	return mux
}

func (g *Gateway) postToConnection(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	data, err := io.ReadAll(io.LimitReader(r.Body, g.cfg.MaxMessageSize+1))
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "BadRequestException", "could not read the request body")
		return
	}
	if int64(len(data)) > g.cfg.MaxMessageSize {
		writeAPIError(w, http.StatusRequestEntityTooLarge, "PayloadTooLargeException",
			fmt.Sprintf("Message too long. Max allowed size is %d bytes", g.cfg.MaxMessageSize))
		return
	}
	if err := g.Send(r.Context(), "", id, data); err != nil {
		g.writeSendError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (g *Gateway) getConnection(w http.ResponseWriter, r *http.Request) {
	lc := g.lookup(r.PathValue("id"))
	if lc == nil {
		writeGone(w)
		return
	}
	sourceIP := lc.c.RemoteAddr
	if host, _, err := net.SplitHostPort(sourceIP); err == nil {
		sourceIP = host
	}
	body := connectionInfo{
		ConnectedAt:  lc.c.ConnectedAt.UTC().Format(time.RFC3339Nano),
		LastActiveAt: lc.lastActiveAt().UTC().Format(time.RFC3339Nano),
		Identity: identity{
			SourceIP:  sourceIP,
			UserAgent: lc.c.Request.UserAgent(),
		},
	}
	writeJSON(w, http.StatusOK, body)
}

func (g *Gateway) deleteConnection(w http.ResponseWriter, r *http.Request) {
	if err := g.Disconnect(r.Context(), "", r.PathValue("id")); err != nil {
		g.writeSendError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (g *Gateway) writeSendError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, transport.ErrGone):
		writeGone(w)
	case errors.Is(err, ErrTooLarge):
		writeAPIError(w, http.StatusRequestEntityTooLarge, "PayloadTooLargeException", "Message too long")
	default:
		g.log.Error().Err(err).Msg("local: management api")
		writeAPIError(w, http.StatusInternalServerError, "InternalServerErrorException", "Internal server error")
	}
}

type connectionInfo struct {
	ConnectedAt  string   `json:"connectedAt"`
	LastActiveAt string   `json:"lastActiveAt"`
	Identity     identity `json:"identity"`
}

type identity struct {
	SourceIP  string `json:"sourceIp"`
	UserAgent string `json:"userAgent"`
}

func writeGone(w http.ResponseWriter) {
	writeAPIError(w, http.StatusGone, "GoneException", "The connection is gone")
}

// writeAPIError writes an error the way API Gateway does: the SDK reads the
// error type from X-Amzn-Errortype, the message from the body.
func writeAPIError(w http.ResponseWriter, status int, errType, message string) {
	w.Header().Set("X-Amzn-Errortype", errType)
	writeJSON(w, status, struct {
		Message string `json:"message"`
	}{message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only fixed struct types of this file are marshaled.
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// ManagementRefused answers every request with 403: it is what the
// WebSocket listener serves at /@connections/ once the Management API has
// a listener of its own ([ListenManagement]), so that a client that learns
// a connection id cannot post forged frames to it, disconnect it or read
// its address.
func ManagementRefused() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeAPIError(w, http.StatusForbidden, "ForbiddenException",
			"the Management API is not served on this address: it listens on its own loopback address")
	})
}

// ListenManagement listens on a free port of 127.0.0.1 for the Management
// API, apart from the WebSocket listener, and returns the listener and its
// base URL (http://127.0.0.1:PORT) for the processors' sender. Serve
// [Gateway.Management] on it with [NewHTTPServer].
func ListenManagement(ctx context.Context) (net.Listener, string, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("local: Management API listener: %w", err)
	}
	return ln, "http://" + ln.Addr().String(), nil
}
