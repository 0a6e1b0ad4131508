package memory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/streamer-go/streamer/storage"
)

var _ storage.ConnectionCounter = (*Store)(nil)

// PutConnectionCounted stores c unless its principal already has limit
// unexpired connections ([storage.ErrTooManyConnections]). The memory store
// keeps no counter: it counts the principal's unexpired connections, those
// stored with PutConnection included, under its lock, so the count is
// always exact. It looks at every connection of the store: fine for tests
// and examples, which are what this store is for.
func (s *Store) PutConnectionCounted(ctx context.Context, c storage.Connection, limit int) error {
	if err := errCtx(ctx, "put counted connection"); err != nil {
		return err
	}
	if c.ID == "" {
		return errors.New("memory: put counted connection: empty connection id")
	}
	if limit < 1 {
		return fmt.Errorf("memory: put counted connection %s: limit %d is below 1", c.ID, limit)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.openLocked(c.Tenant, c.Subject, c.ID); n >= limit {
		return fmt.Errorf("memory: put counted connection %s: %w (limit %d)", c.ID, storage.ErrTooManyConnections, limit)
	}
	s.conns[c.ID] = cloneConn(c)
	return nil
}

// OpenConnections counts the principal's unexpired connections.
func (s *Store) OpenConnections(ctx context.Context, tenant, subject string) (int, error) {
	if err := errCtx(ctx, "open connections"); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.openLocked(tenant, subject, ""), nil
}

// openLocked counts the principal's unexpired connections but except.
func (s *Store) openLocked(tenant, subject, except string) int {
	now := time.Now()
	n := 0
	for id, c := range s.conns {
		if id != except && c.Tenant == tenant && c.Subject == subject && !expired(c.ExpiresAt, now) {
			n++
		}
	}
	return n
}
