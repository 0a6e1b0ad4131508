package lambdaapp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/streamer-go/streamer/ratelimit"
	"github.com/streamer-go/streamer/storage"
)

// Bucket keys of the connection rate limits (ratelimit/dynamodb items of
// the table). They cannot collide with middleware.RateLimit's, which
// start with a length and ":".
const (
	keyConnIP        = "conn-ip|"
	keyConnPrincipal = "conn-principal|"
)

// refusal is a $connect refused before the upgrade: 429 with a
// Retry-After header and a body naming the limit.
type refusal struct {
	reason     string
	retryAfter time.Duration
}

func (r *refusal) Error() string { return "lambdaapp: connection refused: " + r.reason }

// response is the $connect response of the refusal.
func (r *refusal) response() events.APIGatewayProxyResponse {
	secs := max(1, int64(math.Ceil(r.retryAfter.Seconds())))
	return events.APIGatewayProxyResponse{
		StatusCode: http.StatusTooManyRequests,
		Headers:    map[string]string{"Retry-After": strconv.FormatInt(secs, 10), "Content-Type": "text/plain; charset=utf-8"},
		Body:       r.reason,
	}
}

// takeConn takes a token of a connection limit's bucket: a *refusal when
// there is none.
func takeConn(ctx context.Context, l ratelimit.Limiter, rule ratelimit.Rule, key, reason string) error {
	d, err := l.Take(ctx, key, rule, 1)
	if err != nil {
		return fmt.Errorf("lambdaapp: connection rate limit: %w", err)
	}
	if !d.Allowed {
		return &refusal{reason: reason, retryAfter: d.RetryAfter}
	}
	return nil
}

// checkSourceIP applies STREAMER_NEW_CONNECTIONS_PER_IP to a $connect
// event, before its token is verified. An event without a source address
// is not limited.
func (h *Handlers) checkSourceIP(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest) error {
	ip := ev.RequestContext.Identity.SourceIP
	if h.connLimiter == nil || h.cfg.NewConnectionsPerIP.Rate <= 0 || ip == "" {
		return nil
	}
	return takeConn(ctx, h.connLimiter, h.cfg.NewConnectionsPerIP, keyConnIP+ip,
		"too many new connections from this address: try again later")
}

// admittingStore is the connect function's store: it admits a principal's
// new connection before storing it, by STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL
// (a token of the principal's bucket) and then
// STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL (storage.ConnectionCounter). The
// App's HandleConnect stores the connection once the token is verified,
// which is when the principal is known; a refusal comes back from it as
// a *refusal, wrapped. It forwards the optional interfaces of the table's
// store, storage.DueLister, storage.PrincipalLister and storage.Waker, so that an App
// built on it (the local AWS runtime serves every route with the connect
// function's) lists and reaps as before.
type admittingStore struct {
	storage.Store
	counter storage.ConnectionCounter // nil: no cap
	limit   int
	limiter ratelimit.Limiter // nil: no rate
	rule    ratelimit.Rule
}

// PutConnection admits c, then stores it (counted, when there is a cap).
func (s *admittingStore) PutConnection(ctx context.Context, c storage.Connection) error {
	if s.limiter != nil {
		key := keyConnPrincipal + storage.Key{Tenant: c.Tenant, Subject: c.Subject}.String()
		if err := takeConn(ctx, s.limiter, s.rule, key, "too many new connections for this principal: try again later"); err != nil {
			return err
		}
	}
	if s.counter == nil {
		return s.Store.PutConnection(ctx, c)
	}
	err := s.counter.PutConnectionCounted(ctx, c, s.limit)
	if errors.Is(err, storage.ErrTooManyConnections) {
		return &refusal{reason: fmt.Sprintf("too many open connections for this principal (the limit is %d)", s.limit), retryAfter: time.Second}
	}
	return err
}

var (
	_ storage.DueLister       = (*admittingStore)(nil)
	_ storage.PrincipalLister = (*admittingStore)(nil)
	_ storage.Waker           = (*admittingStore)(nil)
)

// WakeWaiting implements storage.Waker with the wrapped store's (none
// when it parks nothing).
func (s *admittingStore) WakeWaiting(ctx context.Context, now time.Time) (int, error) {
	if w, ok := s.Store.(storage.Waker); ok {
		return w.WakeWaiting(ctx, now)
	}
	return 0, nil
}

// ListDue implements storage.DueLister with the wrapped store's.
func (s *admittingStore) ListDue(ctx context.Context, before time.Time, limit int) ([]storage.Request, error) {
	l, ok := s.Store.(storage.DueLister)
	if !ok {
		return nil, fmt.Errorf("lambdaapp: the store (%T) cannot list due requests", s.Store)
	}
	return l.ListDue(ctx, before, limit)
}

// ListRequests implements storage.PrincipalLister with the wrapped store's.
func (s *admittingStore) ListRequests(ctx context.Context, tenant, subject string, q storage.ListQuery) (storage.ListPage, error) {
	l, ok := s.Store.(storage.PrincipalLister)
	if !ok {
		return storage.ListPage{}, fmt.Errorf("lambdaapp: the store (%T) cannot list requests", s.Store)
	}
	return l.ListRequests(ctx, tenant, subject, q)
}

// admitting wraps the connect function's store st in an admittingStore
// when a per-principal limit is on. The cap counts in st when it is a
// storage.ConnectionCounter, else in the table's store (st is a test's
// wrapper of it).
func admitting(st storage.Store, table storage.ConnectionCounter, cfg Config, limiter ratelimit.Limiter) storage.Store {
	a := &admittingStore{Store: st, limit: cfg.MaxConnectionsPerPrincipal}
	if cfg.NewConnectionsPerPrincipal.Rate > 0 {
		a.limiter, a.rule = limiter, cfg.NewConnectionsPerPrincipal
	}
	if cfg.MaxConnectionsPerPrincipal > 0 {
		a.counter = table
		if c, ok := st.(storage.ConnectionCounter); ok {
			a.counter = c
		}
	}
	if a.limiter == nil && a.counter == nil {
		return st
	}
	return a
}
