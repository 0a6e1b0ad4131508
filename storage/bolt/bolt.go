package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"github.com/streamer-go/streamer/storage"
)

var (
	_ storage.Store     = (*Store)(nil)
	_ storage.Lister    = (*Store)(nil)
	_ storage.Sweeper   = (*Store)(nil)
	_ storage.DueLister = (*Store)(nil)
)

// ErrLocked means the database file is in use by another process (or another
// [Store] of this one): its lock was not acquired within [Options.Timeout].
var ErrLocked = errors.New("bolt: database is in use by another process")

// DefaultTimeout is how long [Open] waits for the file lock when
// [Options.Timeout] is zero.
const DefaultTimeout = time.Second

// formatVersion is the version of the on-disk layout, stored in meta.
const formatVersion = "1"

var (
	bucketMeta       = []byte("meta")
	bucketConns      = []byte("connections")
	bucketRequests   = []byte("requests")
	bucketEvents     = []byte("events")
	bucketSubsByReq  = []byte("subs_by_request")
	bucketSubsByConn = []byte("subs_by_connection")
	keyVersion       = []byte("version")
)

// Options configures [Open]. The zero value gives the defaults.
type Options struct {
	// Timeout is how long Open waits for the file lock held by another
	// process before failing with ErrLocked. Zero or negative means
	// DefaultTimeout (1s).
	Timeout time.Duration
	// MaxBatch is the most concurrent writes committed together in one
	// transaction (one fsync). Zero means DefaultMaxBatch (1,000); 1
	// commits every write in a transaction of its own. Negative is an
	// error.
	MaxBatch int
	// MaxBatchBytes bounds the encoded bytes (about) of the writes
	// committed together; a single larger write is committed alone. Zero
	// means DefaultMaxBatchBytes (4 MiB). Negative is an error.
	MaxBatchBytes int
}

// Store is a [storage.Store], [storage.Lister], [storage.DueLister] and
// [storage.Sweeper] kept in a bbolt file. It is safe for concurrent use.
// Concurrent writes are committed together (group commit; see the package
// documentation). Close it when done.
type Store struct {
	db *bbolt.DB
	gc *committer

	// conns are the connections, kept in memory: a connection lives only
	// as long as the process that serves it, so storing it would cost two
	// fsync'd writes per connection for nothing (see PutConnection).
	connMu sync.RWMutex
	conns  map[string]storage.Connection
}

// Open opens the database at path, creating the file (mode 0600, not its
// directory) when it does not exist. It fails with an error wrapping
// [ErrLocked] when another process holds the file for longer than
// opts.Timeout, and with one wrapping [ErrCorrupt], which names the file
// and says what to do, when the file is damaged or another program's (bbolt
// panics on some damaged files: Open recovers them). Damage that only a read
// of the damaged page finds makes that read fail with ErrCorrupt later.
func Open(path string, opts Options) (*Store, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	maxOps, maxBytes := opts.MaxBatch, opts.MaxBatchBytes
	if maxOps < 0 || maxBytes < 0 {
		return nil, fmt.Errorf("bolt: open %s: MaxBatch %d and MaxBatchBytes %d must not be negative", path, maxOps, maxBytes)
	}
	if maxOps == 0 {
		maxOps = DefaultMaxBatch
	}
	if maxBytes == 0 {
		maxBytes = DefaultMaxBatchBytes
	}
	// The freelist stays synced: rebuilding it at open scans pages on a
	// goroutine of bbolt's, where a damaged page panics beyond recovery.
	// A hash map keeps it cheaper to search than the default array.
	db, err := openDB(path, &bbolt.Options{Timeout: timeout, FreelistType: bbolt.FreelistMapType})
	if errors.Is(err, bberrors.ErrTimeout) {
		return nil, fmt.Errorf("bolt: open %s: lock not acquired within %s: %w", path, timeout, ErrLocked)
	}
	if errors.Is(err, ErrCorrupt) {
		return nil, err // it names the file and says what to do
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	st := &Store{db: db, conns: map[string]storage.Connection{}}
	err = st.guard(func() error { return db.Update(initBuckets) })
	if err != nil {
		_ = db.Close()
		var ff *foreignFile
		switch {
		case errors.As(err, &ff):
			return nil, corruptError(path, ff)
		case errors.Is(err, ErrCorrupt):
			return nil, err
		}
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	w, err := st.recoverWAL(path + ".wal")
	if err != nil {
		_ = db.Close()
		if errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		return nil, fmt.Errorf("bolt: open %s: event log: %w", path, err)
	}
	st.gc = newCommitter(db, w, maxOps, maxBytes)
	return st, nil
}

// initBuckets creates the Store's buckets in a new file and checks the
// format version of an existing one. A file with other buckets and no
// version is some other program's: it is refused, not written to.
func initBuckets(tx *bbolt.Tx) error {
	if tx.Bucket(bucketMeta) == nil {
		if err := tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			return &foreignFile{bucket: string(name)}
		}); err != nil {
			return err
		}
	}
	for _, name := range [][]byte{bucketMeta, bucketConns, bucketRequests, bucketEvents, bucketSubsByReq, bucketSubsByConn} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	// Connections live in memory (see PutConnection); an older version
	// stored them, and those are stale now: drop them.
	if k, _ := tx.Bucket(bucketConns).Cursor().First(); k != nil {
		if err := tx.DeleteBucket(bucketConns); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketConns); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	switch v := meta.Get(keyVersion); {
	case v == nil:
		return meta.Put(keyVersion, []byte(formatVersion))
	case string(v) != formatVersion:
		return fmt.Errorf("unsupported format version %q (want %q)", v, formatVersion)
	}
	return nil
}

// foreignFile is a bbolt file of some other program: it has a bucket that
// is not the Store's and no format version.
type foreignFile struct{ bucket string }

func (f *foreignFile) Error() string {
	return fmt.Sprintf("a bbolt file of some other program: it has a bucket %q and no Streamer format version", f.bucket)
}

// Close closes the database file. Writes still waiting for their commit
// fail with [ErrClosed] and store nothing; Close waits for the commit in
// flight and for running read transactions. Calls after Close fail (writes
// with ErrClosed).
func (s *Store) Close() error {
	s.gc.close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close: %w", err)
	}
	return nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.db.Path() }

// view runs fn in a read-only transaction, failing first if ctx is done.
func (s *Store) view(ctx context.Context, op string, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: %s: %w", op, err)
	}
	if err := s.guard(func() error { return s.db.View(fn) }); err != nil {
		return fmt.Errorf("bolt: %s: %w", op, err)
	}
	return nil
}

// update runs a write through the group commit and returns once the
// transaction that holds it has been committed (fsync'd), failing first if
// ctx is done. check, when not nil, decides whether the write is refused:
// it must write nothing. apply makes the change; its failure rolls the
// batch back and the other writes are run again without it. Both may run
// more than once, so they reset what they compute; check runs right before
// apply, in the same transaction. size is about how many bytes the write
// stores, for the batch's byte budget.
func (s *Store) update(ctx context.Context, op string, size int, check, apply txFunc) error {
	return s.write(ctx, op, &write{size: size, check: check, apply: apply})
}

// write runs w through the group commit, as update does.
func (s *Store) write(ctx context.Context, op string, w *write) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: %s: %w", op, err)
	}
	w.ctx = ctx
	err := s.gc.do(w)
	if err != nil {
		return fmt.Errorf("bolt: %s: %w", op, err)
	}
	return nil
}

// expired reports whether an item with the given expiry is gone at now.
func expired(expiresAt, now time.Time) bool {
	return !expiresAt.IsZero() && expiresAt.Before(now)
}

func seqKey(seq int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	return b[:]
}

// --- connections ----------------------------------------------------------

// PutConnection creates or replaces a connection. Connections are kept in
// memory, not in the file: a WebSocket connection ends with the process
// that serves it (the embedded runtime's), so one stored by an earlier
// process could only be stale, and connecting costs no write. Open drops
// the connections an older version stored.
func (s *Store) PutConnection(ctx context.Context, c storage.Connection) error {
	if c.ID == "" {
		return errors.New("bolt: put connection: empty connection id")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: put connection: %w", err)
	}
	c.Principal = bytes.Clone(c.Principal)
	s.connMu.Lock()
	s.conns[c.ID] = c
	s.connMu.Unlock()
	return nil
}

// GetConnection returns the connection id, or [storage.ErrNotFound] when it
// does not exist or has expired.
func (s *Store) GetConnection(ctx context.Context, id string) (storage.Connection, error) {
	if err := ctx.Err(); err != nil {
		return storage.Connection{}, fmt.Errorf("bolt: get connection: %w", err)
	}
	s.connMu.RLock()
	c, ok := s.conns[id]
	s.connMu.RUnlock()
	if !ok || expired(c.ExpiresAt, time.Now()) {
		return storage.Connection{}, fmt.Errorf("bolt: get connection: connection %q: %w", id, storage.ErrNotFound)
	}
	c.Principal = bytes.Clone(c.Principal)
	return c, nil
}

// DeleteConnection removes a connection and all its subscriptions (one
// transaction when it has any; none when it has none). A missing
// connection is not an error.
func (s *Store) DeleteConnection(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: delete connection: %w", err)
	}
	s.connMu.Lock()
	delete(s.conns, id)
	s.connMu.Unlock()
	var subscribed bool
	err := s.view(ctx, "delete connection", func(tx *bbolt.Tx) error {
		subscribed = tx.Bucket(bucketSubsByConn).Bucket([]byte(id)) != nil
		return nil
	})
	if err != nil || !subscribed {
		return err
	}
	return s.update(ctx, "delete connection", len(id), nil, func(tx *bbolt.Tx) error {
		return deleteConn(tx, []byte(id))
	})
}

func deleteConn(tx *bbolt.Tx, id []byte) error {
	if err := tx.Bucket(bucketConns).Delete(id); err != nil {
		return err
	}
	byConn := tx.Bucket(bucketSubsByConn)
	subs := byConn.Bucket(id)
	if subs == nil {
		return nil
	}
	byReq := tx.Bucket(bucketSubsByReq)
	err := subs.ForEach(func(k, _ []byte) error {
		return deleteNested(byReq, k, id)
	})
	if err != nil {
		return err
	}
	return byConn.DeleteBucket(id)
}

// deleteNested deletes key from the nested bucket name of parent, and the
// nested bucket when it becomes empty.
func deleteNested(parent *bbolt.Bucket, name, key []byte) error {
	b := parent.Bucket(name)
	if b == nil {
		return nil
	}
	if err := b.Delete(key); err != nil {
		return err
	}
	if k, _ := b.Cursor().First(); k == nil {
		return parent.DeleteBucket(name)
	}
	return nil
}

// --- subscriptions --------------------------------------------------------

// subExpiry encodes a subscription's expiry, the value of both its entries:
// empty for never, else the epoch milliseconds as a big-endian int64.
func subExpiry(t time.Time) []byte {
	if t.IsZero() {
		return []byte{}
	}
	return seqKey(t.UnixMilli())
}

// subExpired decodes a subscription's expiry and reports whether it has
// passed at now.
func subExpired(v []byte, now time.Time) (bool, error) {
	switch len(v) {
	case 0:
		return false, nil
	case 8:
		return expired(time.UnixMilli(int64(binary.BigEndian.Uint64(v))), now), nil //nolint:gosec // the inverse of seqKey
	default:
		return false, fmt.Errorf("malformed subscription expiry of %d bytes", len(v))
	}
}

// Subscribe subscribes connID to k's events until expiresAt (zero: never).
// Subscribing again is not an error and replaces the expiry.
func (s *Store) Subscribe(ctx context.Context, k storage.Key, connID string, expiresAt time.Time) error {
	if connID == "" {
		return errors.New("bolt: subscribe: empty connection id")
	}
	rk, cid, exp := []byte(k.String()), []byte(connID), subExpiry(expiresAt)
	var r storage.Request
	var found bool
	check := func(tx *bbolt.Tx) error {
		var err error
		r, err = getRequest(tx, rk, time.Now())
		found = err == nil
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		return err
	}
	return s.update(ctx, "subscribe", 2*(len(rk)+len(cid)+len(exp)), check, func(tx *bbolt.Tx) error {
		byReq, err := tx.Bucket(bucketSubsByReq).CreateBucketIfNotExists(rk)
		if err != nil {
			return err
		}
		if err := byReq.Put(cid, exp); err != nil {
			return err
		}
		byConn, err := tx.Bucket(bucketSubsByConn).CreateBucketIfNotExists(cid)
		if err != nil {
			return err
		}
		if err := byConn.Put(rk, exp); err != nil {
			return err
		}
		if !found {
			return nil
		}
		r.SubsVersion++
		return putRequest(tx, r)
	})
}

// Unsubscribe removes one subscription; a missing one is not an error.
func (s *Store) Unsubscribe(ctx context.Context, k storage.Key, connID string) error {
	if connID == "" {
		return nil
	}
	rk, cid := []byte(k.String()), []byte(connID)
	return s.update(ctx, "unsubscribe", len(rk)+len(cid), nil, func(tx *bbolt.Tx) error {
		if err := deleteNested(tx.Bucket(bucketSubsByReq), rk, cid); err != nil {
			return err
		}
		return deleteNested(tx.Bucket(bucketSubsByConn), cid, rk)
	})
}

// Subscribers lists the connections subscribed to k, in connection id
// order, leaving expired subscriptions out.
func (s *Store) Subscribers(ctx context.Context, k storage.Key) ([]string, error) {
	var out []string
	err := s.view(ctx, "subscribers", func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSubsByReq).Bucket([]byte(k.String()))
		if b == nil {
			return nil
		}
		now := time.Now()
		return b.ForEach(func(id, v []byte) error {
			gone, err := subExpired(v, now)
			if err != nil {
				return fmt.Errorf("subscription of %q to %s: %w", id, k, err)
			}
			if !gone {
				out = append(out, string(id))
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Subscriptions lists the requests connID is subscribed to, in key order,
// leaving expired subscriptions out.
func (s *Store) Subscriptions(ctx context.Context, connID string) ([]storage.Key, error) {
	var out []storage.Key
	err := s.view(ctx, "subscriptions", func(tx *bbolt.Tx) error {
		if connID == "" {
			return nil
		}
		b := tx.Bucket(bucketSubsByConn).Bucket([]byte(connID))
		if b == nil {
			return nil
		}
		now := time.Now()
		return b.ForEach(func(rk, v []byte) error {
			gone, err := subExpired(v, now)
			if err != nil {
				return fmt.Errorf("subscription of %q to %s: %w", connID, rk, err)
			}
			if gone {
				return nil
			}
			k, err := storage.ParseKey(string(rk))
			if err != nil {
				return fmt.Errorf("decoding key %q: %w", rk, err)
			}
			out = append(out, k)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// --- requests -------------------------------------------------------------

// CreateRequest stores a new request, or returns [storage.ErrExists] and
// stores nothing when a live request has the same key. An expired request
// with the same key is replaced, events and subscriptions included.
func (s *Store) CreateRequest(ctx context.Context, r storage.Request) error {
	rk := []byte(r.Key.String())
	v, err := json.Marshal(fromRequest(r))
	if err != nil {
		return fmt.Errorf("bolt: create request %s: %w", r.Key, err)
	}
	var replace bool // an expired request has the key
	check := func(tx *bbolt.Tx) error {
		replace = false
		if tx.Bucket(bucketRequests).Get(rk) == nil {
			return nil
		}
		_, err := getRequest(tx, rk, time.Now())
		switch {
		case err == nil:
			return fmt.Errorf("request %s: %w", r.Key, storage.ErrExists)
		case !errors.Is(err, storage.ErrNotFound):
			return err
		}
		replace = true
		return nil
	}
	return s.update(ctx, "create request", len(rk)+len(v), check, func(tx *bbolt.Tx) error {
		if replace {
			if _, err := deleteRequest(tx, rk); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketRequests).Put(rk, v)
	})
}

// deleteRequest deletes a request, its events and its subscriptions, and
// returns how many events it had.
func deleteRequest(tx *bbolt.Tx, rk []byte) (int, error) {
	if err := tx.Bucket(bucketRequests).Delete(rk); err != nil {
		return 0, err
	}
	n := 0
	events := tx.Bucket(bucketEvents)
	if b := events.Bucket(rk); b != nil {
		n = b.Stats().KeyN
		if err := events.DeleteBucket(rk); err != nil {
			return 0, err
		}
	}
	byReq := tx.Bucket(bucketSubsByReq)
	subs := byReq.Bucket(rk)
	if subs == nil {
		return n, nil
	}
	byConn := tx.Bucket(bucketSubsByConn)
	err := subs.ForEach(func(cid, _ []byte) error {
		return deleteNested(byConn, cid, rk)
	})
	if err != nil {
		return 0, err
	}
	return n, byReq.DeleteBucket(rk)
}

// getRequest returns the live request stored under rk.
func getRequest(tx *bbolt.Tx, rk []byte, now time.Time) (storage.Request, error) {
	v := tx.Bucket(bucketRequests).Get(rk)
	if v == nil {
		return storage.Request{}, fmt.Errorf("request %s: %w", rk, storage.ErrNotFound)
	}
	r, err := decodeRequest(rk, v)
	if err != nil {
		return storage.Request{}, err
	}
	if expired(r.ExpiresAt, now) {
		return storage.Request{}, fmt.Errorf("request %s: %w", rk, storage.ErrNotFound)
	}
	return r, nil
}

// fenceRecord is the part of a requestRecord that decides whether an event
// may be appended.
type fenceRecord struct {
	Status      storage.Status `json:"status"`
	Attempt     int            `json:"attempt,omitempty"`
	SubsVersion int64          `json:"subs_version,omitempty"`
	ExpiresAt   time.Time      `json:"expires_at"`
}

// getFence is getRequest for a check that needs only the request's status,
// attempt and subscriber version: the request it returns has only those.
func getFence(tx *bbolt.Tx, rk []byte, now time.Time) (storage.Request, error) {
	v := tx.Bucket(bucketRequests).Get(rk)
	if v == nil {
		return storage.Request{}, fmt.Errorf("request %s: %w", rk, storage.ErrNotFound)
	}
	var rec fenceRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return storage.Request{}, fmt.Errorf("decoding request %s: %w", rk, err)
	}
	if expired(rec.ExpiresAt, now) {
		return storage.Request{}, fmt.Errorf("request %s: %w", rk, storage.ErrNotFound)
	}
	return storage.Request{Status: rec.Status, Attempt: rec.Attempt, SubsVersion: rec.SubsVersion, ExpiresAt: rec.ExpiresAt}, nil
}

func decodeRequest(rk, v []byte) (storage.Request, error) {
	var rec requestRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return storage.Request{}, fmt.Errorf("decoding request %s: %w", rk, err)
	}
	k, err := storage.ParseKey(string(rk))
	if err != nil {
		return storage.Request{}, fmt.Errorf("decoding request key %q: %w", rk, err)
	}
	return rec.request(k), nil
}

func putRequest(tx *bbolt.Tx, r storage.Request) error {
	v, err := json.Marshal(fromRequest(r))
	if err != nil {
		return fmt.Errorf("encoding request %s: %w", r.Key, err)
	}
	return tx.Bucket(bucketRequests).Put([]byte(r.Key.String()), v)
}

// GetRequest returns the request k, or [storage.ErrNotFound] when it does not
// exist or has expired.
func (s *Store) GetRequest(ctx context.Context, k storage.Key) (storage.Request, error) {
	var r storage.Request
	err := s.view(ctx, "get request", func(tx *bbolt.Tx) error {
		var err error
		r, err = getRequest(tx, []byte(k.String()), time.Now())
		return err
	})
	return r, err
}

// modify runs fn on the live request k in a write transaction and stores
// the request when fn returns nil; an error of fn is a refusal that writes
// nothing. fn may run more than once, each time on the request as read.
func (s *Store) modify(ctx context.Context, op string, k storage.Key, fn func(r *storage.Request) error) (storage.Request, error) {
	var r storage.Request
	rk := []byte(k.String())
	check := func(tx *bbolt.Tx) error {
		var err error
		r, err = getRequest(tx, rk, time.Now())
		if err != nil {
			return err
		}
		return fn(&r)
	}
	err := s.update(ctx, op, len(rk)+requestSize(0), check, func(tx *bbolt.Tx) error {
		return putRequest(tx, r)
	})
	return r, err
}

// requestSize is about the encoded size of a request record with n bytes
// of payload, result and checkpoint, for the batch byte budget.
func requestSize(n int) int { return 512 + n }

// errUnchanged stops modify without writing, with no error.
var errUnchanged = errors.New("unchanged")

// ClaimRequest claims k as described by [storage.Store.ClaimRequest] and
// sets UpdatedAt to c.Now.
func (s *Store) ClaimRequest(ctx context.Context, k storage.Key, c storage.Claim) (storage.Request, error) {
	return s.modify(ctx, "claim request", k, func(r *storage.Request) error {
		stalled := c.Stalled
		switch r.Status {
		case storage.StatusQueued:
			if r.NotBefore.After(c.Now) {
				return fmt.Errorf("request %s not before %s: %w", k, r.NotBefore, storage.ErrConflict)
			}
			r.Status = storage.StatusRunning
		case storage.StatusRunning, storage.StatusCanceling:
			if !c.Now.After(r.LeaseUntil) {
				return fmt.Errorf("request %s leased until %s: %w", k, r.LeaseUntil, storage.ErrConflict)
			}
			stalled = true // the previous run's lease passed: it died
		default:
			return fmt.Errorf("request %s is %s: %w", k, r.Status, storage.ErrConflict)
		}
		if stalled {
			r.Stalls++
		}
		if r.StartedAt.IsZero() {
			r.StartedAt = c.Now
		}
		r.Attempt++
		r.LeaseUntil = c.LeaseUntil
		r.UpdatedAt = c.Now
		return nil
	})
}

// ExtendLease moves LeaseUntil of a running or canceling request claimed as
// attempt; [storage.ErrConflict] otherwise.
func (s *Store) ExtendLease(ctx context.Context, k storage.Key, attempt int, until time.Time) error {
	_, err := s.modify(ctx, "extend lease", k, func(r *storage.Request) error {
		if (r.Status != storage.StatusRunning && r.Status != storage.StatusCanceling) || r.Attempt != attempt {
			return fmt.Errorf("request %s is %s attempt %d, want attempt %d: %w", k, r.Status, r.Attempt, attempt, storage.ErrConflict)
		}
		r.LeaseUntil = until
		return nil
	})
	return err
}

// RequeueRequest moves a running request claimed as attempt back to queued
// with the given NotBefore; [storage.ErrConflict] otherwise.
func (s *Store) RequeueRequest(ctx context.Context, k storage.Key, attempt int, notBefore time.Time) error {
	return s.requeue(ctx, "requeue request", k, attempt, notBefore, false)
}

// ContinueRequest is RequeueRequest that also counts a continuation.
func (s *Store) ContinueRequest(ctx context.Context, k storage.Key, attempt int, notBefore time.Time) error {
	return s.requeue(ctx, "continue request", k, attempt, notBefore, true)
}

func (s *Store) requeue(ctx context.Context, op string, k storage.Key, attempt int, notBefore time.Time, continued bool) error {
	_, err := s.modify(ctx, op, k, func(r *storage.Request) error {
		if r.Status != storage.StatusRunning || r.Attempt != attempt {
			return fmt.Errorf("request %s is %s attempt %d, want running attempt %d: %w", k, r.Status, r.Attempt, attempt, storage.ErrConflict)
		}
		r.Status = storage.StatusQueued
		r.NotBefore = notBefore
		r.LeaseUntil = time.Time{}
		if continued {
			r.Continuations++
		}
		return nil
	})
	return err
}

// SaveCheckpoint sets the Checkpoint of a running or canceling request
// claimed as attempt; [storage.ErrConflict] otherwise.
func (s *Store) SaveCheckpoint(ctx context.Context, k storage.Key, attempt int, state json.RawMessage) error {
	_, err := s.modify(ctx, "save checkpoint", k, func(r *storage.Request) error {
		if (r.Status != storage.StatusRunning && r.Status != storage.StatusCanceling) || r.Attempt != attempt {
			return fmt.Errorf("request %s is %s attempt %d, want attempt %d: %w", k, r.Status, r.Attempt, attempt, storage.ErrConflict)
		}
		r.Checkpoint = append(json.RawMessage(nil), state...)
		return nil
	})
	return err
}

// CancelRequest marks a queued or running request canceling, setting
// UpdatedAt to now. A canceling or finished request is returned unchanged.
func (s *Store) CancelRequest(ctx context.Context, k storage.Key, now time.Time) (storage.Request, error) {
	r, err := s.modify(ctx, "cancel request", k, func(r *storage.Request) error {
		if r.Status != storage.StatusQueued && r.Status != storage.StatusRunning {
			return errUnchanged
		}
		r.Status = storage.StatusCanceling
		r.UpdatedAt = now
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return r, nil
	}
	return r, err
}

// FinishRequest appends f.Event and sets the final state in one
// transaction, with UpdatedAt set to f.Now. It returns
// [storage.ErrConflict], writing nothing, when the request has finished,
// its Attempt is not f.Attempt or the event's seq is taken.
func (s *Store) FinishRequest(ctx context.Context, k storage.Key, f storage.Finish) error {
	if !f.Status.Final() {
		return fmt.Errorf("bolt: finish request %s: status %q is not final", k, f.Status)
	}
	if f.Event.Seq < 1 {
		return fmt.Errorf("bolt: finish request %s: seq %d is not positive", k, f.Event.Seq)
	}
	ev, err := json.Marshal(fromEvent(f.Event))
	if err != nil {
		return fmt.Errorf("bolt: finish request %s: %w", k, err)
	}
	rk := []byte(k.String())
	var r storage.Request
	check := func(tx *bbolt.Tx) error {
		var err error
		r, err = getRequest(tx, rk, time.Now())
		if err != nil {
			return err
		}
		if r.Status.Final() {
			return fmt.Errorf("request %s is %s: %w", k, r.Status, storage.ErrConflict)
		}
		if r.Attempt != f.Attempt {
			return fmt.Errorf("request %s is at attempt %d, not %d: %w", k, r.Attempt, f.Attempt, storage.ErrConflict)
		}
		return seqFree(tx, rk, f.Event.Seq)
	}
	size := len(rk) + len(ev) + requestSize(len(f.Result))
	return s.update(ctx, "finish request", size, check, func(tx *bbolt.Tx) error {
		if err := putEvent(tx, rk, f.Event.Seq, ev); err != nil {
			return err
		}
		r.Status = f.Status
		r.Result = f.Result
		r.ResultChunks = f.ResultChunks
		r.Error = f.Error
		r.UpdatedAt = f.Now
		return putRequest(tx, r)
	})
}

// --- events ---------------------------------------------------------------

// seqFree returns ErrConflict when the request rk has an event seq.
func seqFree(tx *bbolt.Tx, rk []byte, seq int64) error {
	if b := tx.Bucket(bucketEvents).Bucket(rk); b != nil && b.Get(seqKey(seq)) != nil {
		return fmt.Errorf("request %s seq %d: %w", rk, seq, storage.ErrConflict)
	}
	return nil
}

// putEvent stores an encoded event, or fails with ErrConflict when its seq
// is taken.
func putEvent(tx *bbolt.Tx, rk []byte, seq int64, v []byte) error {
	b, err := tx.Bucket(bucketEvents).CreateBucketIfNotExists(rk)
	if err != nil {
		return err
	}
	sk := seqKey(seq)
	if b.Get(sk) != nil {
		return fmt.Errorf("request %s seq %d: %w", rk, seq, storage.ErrConflict)
	}
	// Events are appended in order: let bbolt fill pages completely.
	b.FillPercent = 0.9
	return b.Put(sk, v)
}

// AppendEvent appends a non-terminal event; see [storage.Store.AppendEvent].
func (s *Store) AppendEvent(ctx context.Context, k storage.Key, attempt int, e storage.Event, subsVersion int64) error {
	if e.Seq < 1 {
		return fmt.Errorf("bolt: append event %s: seq %d is not positive", k, e.Seq)
	}
	v, err := json.Marshal(fromEvent(e))
	if err != nil {
		return fmt.Errorf("bolt: append event %s: %w", k, err)
	}
	rk := []byte(k.String())
	fence := func(r storage.Request) error {
		if r.Status.Final() {
			return fmt.Errorf("request %s is %s: %w", k, r.Status, storage.ErrConflict)
		}
		if r.Attempt != attempt {
			return fmt.Errorf("request %s is at attempt %d, not %d: %w", k, r.Attempt, attempt, storage.ErrConflict)
		}
		if r.SubsVersion != subsVersion {
			return &storage.SubscribersChangedError{Version: r.SubsVersion}
		}
		return nil
	}
	seq := e.Seq
	if e.Checkpoint == nil {
		// The event alone: it may go to the event log, and the check
		// needs only the request's fence.
		return s.write(ctx, "append event", &write{
			size: len(rk) + len(v),
			check: func(tx *bbolt.Tx) error {
				f, err := getFence(tx, rk, time.Now())
				if err != nil {
					return err
				}
				if err := fence(f); err != nil {
					return err
				}
				return seqFree(tx, rk, seq)
			},
			apply: func(tx *bbolt.Tx) error { return putEvent(tx, rk, seq, v) },
			log:   &logRecord{rk: string(rk), seq: seq, value: v, fence: fence},
		})
	}
	var r storage.Request
	check := func(tx *bbolt.Tx) error {
		var err error
		r, err = getRequest(tx, rk, time.Now())
		if err != nil {
			return err
		}
		if err := fence(r); err != nil {
			return err
		}
		return seqFree(tx, rk, seq)
	}
	checkpoint := e.Checkpoint
	w := &write{size: len(rk) + len(v) + requestSize(len(checkpoint)), check: check, apply: func(tx *bbolt.Tx) error {
		if err := putEvent(tx, rk, seq, v); err != nil {
			return err
		}
		r.Checkpoint = append(json.RawMessage(nil), checkpoint...)
		return putRequest(tx, r)
	}}
	return s.write(ctx, "append event", w)
}

// events returns the event bucket of a live request, or nil.
func events(tx *bbolt.Tx, rk []byte, now time.Time) (*bbolt.Bucket, error) {
	if _, err := getRequest(tx, rk, now); err != nil {
		return nil, err
	}
	return tx.Bucket(bucketEvents).Bucket(rk), nil
}

func decodeEvent(rk, v []byte) (storage.Event, error) {
	var rec eventRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return storage.Event{}, fmt.Errorf("decoding event of %s: %w", rk, err)
	}
	return rec.event(), nil
}

// ReadEvents returns up to limit unexpired events of k with Seq > after, in
// order; limit ≤ 0 means no limit. An unknown request has no events.
func (s *Store) ReadEvents(ctx context.Context, k storage.Key, after int64, limit int) ([]storage.Event, error) {
	rk := []byte(k.String())
	logged := s.gc.pend.of(string(rk)) // before the transaction: see pending
	var out []storage.Event
	err := s.view(ctx, "read events", func(tx *bbolt.Tx) error {
		now := time.Now()
		b, err := events(tx, rk, now)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if b != nil {
			c := b.Cursor()
			var sk, v []byte
			if after < 0 {
				sk, v = c.First()
			} else {
				sk, v = c.Seek(seqKey(after + 1))
			}
			for ; sk != nil; sk, v = c.Next() {
				if limit > 0 && len(out) == limit {
					break
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				ev, err := decodeEvent(rk, v)
				if err != nil {
					return err
				}
				if !expired(ev.ExpiresAt, now) {
					out = append(out, ev)
				}
			}
		}
		logged = slices.DeleteFunc(logged, func(r logRecord) bool { return r.seq <= after })
		evs, err := decodeRecords(logged, now)
		if err != nil {
			return err
		}
		out = mergeEvents(out, evs)
		if limit > 0 && len(out) > limit {
			out = out[:limit]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// LastEvent returns the unexpired event of k with the highest seq, or
// [storage.ErrNotFound] when there is none.
func (s *Store) LastEvent(ctx context.Context, k storage.Key) (storage.Event, error) {
	rk := []byte(k.String())
	logged := s.gc.pend.of(string(rk)) // before the transaction: see pending
	var out storage.Event
	err := s.view(ctx, "last event", func(tx *bbolt.Tx) error {
		now := time.Now()
		if _, err := events(tx, rk, now); err != nil {
			return err
		}
		var err error
		out, err = lastLive(tx, rk, logged, now)
		if err != nil {
			return err
		}
		if out.Seq == 0 {
			return fmt.Errorf("request %s has no events: %w", k, storage.ErrNotFound)
		}
		return nil
	})
	return out, err
}

// --- optional capabilities -----------------------------------------------

// ListUnfinished returns every unexpired request whose status is not final,
// in key order. It reads every request.
func (s *Store) ListUnfinished(ctx context.Context) ([]storage.Request, error) {
	var out []storage.Request
	err := s.view(ctx, "list unfinished", func(tx *bbolt.Tx) error {
		now := time.Now()
		return tx.Bucket(bucketRequests).ForEach(func(rk, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			r, err := decodeRequest(rk, v)
			if err != nil {
				return err
			}
			if !r.Status.Final() && !expired(r.ExpiresAt, now) {
				out = append(out, r)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListDue returns up to limit (≤ 0: all) unexpired live requests due
// before before (see [storage.Due]), in key order. Like ListUnfinished it
// reads every request: the file keeps no index by status or time.
func (s *Store) ListDue(ctx context.Context, before time.Time, limit int) ([]storage.Request, error) {
	var out []storage.Request
	err := s.view(ctx, "list due", func(tx *bbolt.Tx) error {
		now := time.Now()
		c := tx.Bucket(bucketRequests).Cursor()
		for rk, v := c.First(); rk != nil && (limit <= 0 || len(out) < limit); rk, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			r, err := decodeRequest(rk, v)
			if err != nil {
				return err
			}
			if storage.Due(r, before) && !expired(r.ExpiresAt, now) {
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Sweep deletes connections, requests, events and subscriptions whose
// expiry is before now, with the subscriptions of deleted connections and
// requests, in one transaction, and reports how many connections, requests,
// events and expired subscriptions it deleted. It reads every record.
func (s *Store) Sweep(ctx context.Context, now time.Time) (int, error) {
	n := 0
	var gone [][]byte // expired connections, dropped from memory below
	s.connMu.Lock()
	for id, c := range s.conns {
		if expired(c.ExpiresAt, now) {
			gone = append(gone, []byte(id))
			delete(s.conns, id)
		}
	}
	s.connMu.Unlock()
	err := s.update(ctx, "sweep", 0, nil, func(tx *bbolt.Tx) error {
		n = 0
		var reqs [][]byte
		for _, id := range gone {
			if err := deleteConn(tx, id); err != nil {
				return err
			}
			n++
		}

		err := tx.Bucket(bucketRequests).ForEach(func(rk, v []byte) error {
			var rec requestRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decoding request %s: %w", rk, err)
			}
			if expired(rec.ExpiresAt, now) {
				reqs = append(reqs, bytes.Clone(rk))
			}
			return ctx.Err()
		})
		if err != nil {
			return err
		}
		for _, rk := range reqs {
			evs, err := deleteRequest(tx, rk)
			if err != nil {
				return err
			}
			n += 1 + evs
		}

		// Expired events of live requests.
		events := tx.Bucket(bucketEvents)
		var names [][]byte
		err = events.ForEachBucket(func(rk []byte) error {
			names = append(names, bytes.Clone(rk))
			return nil
		})
		if err != nil {
			return err
		}
		for _, rk := range names {
			deleted, err := sweepEvents(ctx, events.Bucket(rk), rk, now)
			if err != nil {
				return err
			}
			n += deleted
		}

		deleted, err := sweepSubs(ctx, tx, now)
		if err != nil {
			return err
		}
		n += deleted
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// sweepSubs deletes the expired subscriptions, both entries of each.
func sweepSubs(ctx context.Context, tx *bbolt.Tx, now time.Time) (int, error) {
	type sub struct{ cid, rk []byte }
	var gone []sub
	byConn := tx.Bucket(bucketSubsByConn)
	err := byConn.ForEachBucket(func(cid []byte) error {
		return byConn.Bucket(cid).ForEach(func(rk, v []byte) error {
			exp, err := subExpired(v, now)
			if err != nil {
				return fmt.Errorf("subscription of %q to %s: %w", cid, rk, err)
			}
			if exp {
				gone = append(gone, sub{bytes.Clone(cid), bytes.Clone(rk)})
			}
			return ctx.Err()
		})
	})
	if err != nil {
		return 0, err
	}
	byReq := tx.Bucket(bucketSubsByReq)
	for _, s := range gone {
		if err := deleteNested(byReq, s.rk, s.cid); err != nil {
			return 0, err
		}
		if err := deleteNested(byConn, s.cid, s.rk); err != nil {
			return 0, err
		}
	}
	return len(gone), nil
}

// sweepEvents deletes the expired events of one request's log.
func sweepEvents(ctx context.Context, b *bbolt.Bucket, rk []byte, now time.Time) (int, error) {
	var seqs [][]byte
	err := b.ForEach(func(sk, v []byte) error {
		var rec eventRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("decoding event of %s: %w", rk, err)
		}
		if expired(rec.ExpiresAt, now) {
			seqs = append(seqs, bytes.Clone(sk))
		}
		return ctx.Err()
	})
	if err != nil {
		return 0, err
	}
	for _, sk := range seqs {
		if err := b.Delete(sk); err != nil {
			return 0, err
		}
	}
	return len(seqs), nil
}
