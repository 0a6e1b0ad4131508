package bolt_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/bolt"
	"github.com/streamer-go/streamer/storage/storagetest"
)

// open opens a store in a fresh file, closed when the test ends.
func open(tb testing.TB) *bolt.Store {
	tb.Helper()
	s, err := bolt.Open(filepath.Join(tb.TempDir(), "streamer.db"), bolt.Options{})
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, s.Close()) })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T) storage.Store { return open(t) })
}

// TestConformanceShared runs the suite with one file for every subtest.
func TestConformanceShared(t *testing.T) {
	t.Parallel()
	shared := open(t)
	storagetest.Run(t, func(*testing.T) storage.Store { return shared })
}

func TestReopen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "streamer.db")
	now := time.Now().UTC().Truncate(time.Millisecond)

	s, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	require.Equal(t, path, s.Path())

	conn := storage.Connection{ID: "c1", Tenant: "t", Subject: "alice", Principal: []byte("p"), ConnectedAt: now}
	require.NoError(t, s.PutConnection(ctx, conn))

	running := storage.Key{Tenant: "t", Subject: "alice", ID: "running"}
	done := storage.Key{Tenant: "t", Subject: "alice", ID: "done"}
	for _, k := range []storage.Key{running, done} {
		require.NoError(t, s.CreateRequest(ctx, storage.Request{
			Key: k, Action: "report", Payload: json.RawMessage(`{"a": 1}`), Status: storage.StatusQueued, CreatedAt: now,
		}))
		_, err := s.ClaimRequest(ctx, k, storage.Claim{Now: now, LeaseUntil: now.Add(time.Minute)})
		require.NoError(t, err)
	}
	progress := storage.Event{Seq: 1, Type: "progress", Percentage: 40, Message: "m", Data: []byte(`{"x":1}`), CreatedAt: now}
	require.NoError(t, s.AppendEvent(ctx, running, 1, progress, 0))
	require.NoError(t, s.Subscribe(ctx, running, conn.ID, now.Add(time.Hour)))
	require.NoError(t, s.Subscribe(ctx, running, "forever", time.Time{}))
	require.NoError(t, s.Subscribe(ctx, running, "expired", now.Add(-time.Minute)))
	complete := storage.Event{Seq: 1, Type: "complete", Percentage: 100, Data: []byte(`{"done":true}`), CreatedAt: now}
	require.NoError(t, s.FinishRequest(ctx, done, storage.Finish{
		Attempt: 1, Event: complete, Status: storage.StatusSucceeded, Result: json.RawMessage(`"ok"`), Now: now,
	}))
	wantRunning, err := s.GetRequest(ctx, running)
	require.NoError(t, err)
	wantDone, err := s.GetRequest(ctx, done)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	s, err = bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()

	// Connections live with the process that serves them: none survives.
	_, err = s.GetConnection(ctx, conn.ID)
	require.ErrorIs(t, err, storage.ErrNotFound)

	gotRunning, err := s.GetRequest(ctx, running)
	require.NoError(t, err)
	require.Equal(t, storage.StatusRunning, gotRunning.Status)
	require.Equal(t, 1, gotRunning.Attempt)
	require.Equal(t, []byte(wantRunning.Payload), []byte(gotRunning.Payload))
	require.True(t, wantRunning.LeaseUntil.Equal(gotRunning.LeaseUntil))
	gotDone, err := s.GetRequest(ctx, done)
	require.NoError(t, err)
	require.Equal(t, storage.StatusSucceeded, gotDone.Status)
	require.Equal(t, []byte(wantDone.Result), []byte(gotDone.Result))

	evs, err := s.ReadEvents(ctx, running, 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, progress.Data, evs[0].Data)
	require.Equal(t, progress.Percentage, evs[0].Percentage)
	last, err := s.LastEvent(ctx, done)
	require.NoError(t, err)
	require.Equal(t, complete.Data, last.Data)
	require.True(t, last.Terminal())

	subs, err := s.Subscribers(ctx, running)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{conn.ID, "forever"}, subs, "subscription expiries survive a reopen")

	list, err := s.ListUnfinished(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, running, list[0].Key)

	// The reopened store keeps working: seq 1 is still taken.
	v := list[0].SubsVersion
	require.ErrorIs(t, s.AppendEvent(ctx, running, 1, progress, v), storage.ErrConflict)
	progress.Seq = 2
	require.NoError(t, s.AppendEvent(ctx, running, 1, progress, v))
}

func TestLocked(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "streamer.db")
	first, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, first.Close()) }()

	start := time.Now()
	second, err := bolt.Open(path, bolt.Options{Timeout: 100 * time.Millisecond})
	elapsed := time.Since(start)
	require.Nil(t, second)
	require.ErrorIs(t, err, bolt.ErrLocked)
	require.Contains(t, err.Error(), "in use by another process")
	require.Contains(t, err.Error(), path)
	require.Less(t, elapsed, 5*time.Second, "does not hang")
}

func TestLockReleasedOnClose(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "streamer.db")
	first, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	require.NoError(t, first.Close())
	second, err := bolt.Open(path, bolt.Options{Timeout: 100 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, second.Close())
}

func TestOpenBadPath(t *testing.T) {
	t.Parallel()
	_, err := bolt.Open(filepath.Join(t.TempDir(), "missing-dir", "streamer.db"), bolt.Options{})
	require.Error(t, err)
	require.NotErrorIs(t, err, bolt.ErrLocked)
}

func TestClosed(t *testing.T) {
	t.Parallel()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "streamer.db"), bolt.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = s.GetRequest(context.Background(), storage.Key{ID: "x"})
	require.Error(t, err)
	require.NotErrorIs(t, err, storage.ErrNotFound)
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	s := open(t)
	ctx := t.Context()
	k := storage.Key{ID: "r"}
	require.NoError(t, s.CreateRequest(ctx, storage.Request{Key: k, Status: storage.StatusQueued}))

	require.Error(t, s.PutConnection(ctx, storage.Connection{}))
	require.Error(t, s.Subscribe(ctx, k, "", time.Time{}))
	require.Error(t, s.AppendEvent(ctx, k, 0, storage.Event{Seq: 0, Type: "progress"}, 0))
	require.Error(t, s.AppendEvent(ctx, k, 0, storage.Event{Seq: -1, Type: "progress"}, 0))
	err := s.FinishRequest(ctx, k, storage.Finish{Event: storage.Event{Seq: 1, Type: "complete"}, Status: storage.StatusRunning})
	require.Error(t, err)
	require.NotErrorIs(t, err, storage.ErrConflict)

	r, err := s.GetRequest(ctx, k)
	require.NoError(t, err)
	require.Equal(t, storage.StatusQueued, r.Status)
	evs, err := s.ReadEvents(ctx, k, 0, 0)
	require.NoError(t, err)
	require.Empty(t, evs)
}

// TestCreateOverExpired checks that an expired request does not block a new
// one with the same key, and that the old events do not leak into it.
func TestCreateOverExpired(t *testing.T) {
	t.Parallel()
	s := open(t)
	ctx := t.Context()
	k := storage.Key{ID: "r"}
	require.NoError(t, s.CreateRequest(ctx, storage.Request{Key: k, Status: storage.StatusQueued, ExpiresAt: time.Now().Add(-time.Minute)}))
	require.NoError(t, s.CreateRequest(ctx, storage.Request{Key: k, Action: "new", Status: storage.StatusQueued}))
	r, err := s.GetRequest(ctx, k)
	require.NoError(t, err)
	require.Equal(t, "new", r.Action)
	_, err = s.LastEvent(ctx, k)
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func BenchmarkAppendEvent(b *testing.B) {
	for _, size := range []int{256, 16 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			s := open(b)
			ctx := context.Background()
			k := storage.Key{Tenant: "t", Subject: "s", ID: "bench"}
			require.NoError(b, s.CreateRequest(ctx, storage.Request{Key: k, Status: storage.StatusQueued}))
			ev := storage.Event{Type: "progress", Message: "working", Data: make([]byte, size), CreatedAt: time.Now()}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			var seq int64
			for b.Loop() {
				seq++
				ev.Seq = seq
				ev.Percentage = float64(seq % 100)
				if err := s.AppendEvent(ctx, k, 0, ev, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<10 {
		return itoa(n>>10) + "KiB"
	}
	return itoa(n) + "B"
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// rawUpdate runs fn on the store's file directly, with the store closed.
func rawUpdate(t *testing.T, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(fn))
	require.NoError(t, db.Close())
}

// TestSubscriptionEntries checks the stored subscription entries: empty
// values (files written before subscriptions expired) never expire, a
// malformed expiry is an error rather than a silent skip, and
// DeleteConnection and Sweep delete expired entries from both buckets.
func TestSubscriptionEntries(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "streamer.db")
	k := storage.Key{Tenant: "t", Subject: "alice", ID: "r"}
	rk := []byte(k.String())
	now := time.Now()

	s, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Subscribe(ctx, k, "deleted", now.Add(-time.Minute)))
	require.NoError(t, s.Subscribe(ctx, k, "swept", now.Add(time.Minute)))
	require.NoError(t, s.DeleteConnection(ctx, "deleted"))
	n, err := s.Sweep(ctx, now.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n, "one expired subscription swept")
	require.NoError(t, s.Close())

	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		for _, name := range []string{"subs_by_request", "subs_by_connection"} {
			c := tx.Bucket([]byte(name)).Cursor()
			k, _ := c.First()
			require.Nil(t, k, "%s is empty", name)
		}
		byReq, err := tx.Bucket([]byte("subs_by_request")).CreateBucketIfNotExists(rk)
		require.NoError(t, err)
		byConn, err := tx.Bucket([]byte("subs_by_connection")).CreateBucketIfNotExists([]byte("legacy"))
		require.NoError(t, err)
		require.NoError(t, byReq.Put([]byte("legacy"), nil))
		return byConn.Put(rk, nil)
	})

	s, err = bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	n, err = s.Sweep(ctx, now.Add(1000*time.Hour))
	require.NoError(t, err)
	require.Zero(t, n)
	subs, err := s.Subscribers(ctx, k)
	require.NoError(t, err)
	require.Equal(t, []string{"legacy"}, subs, "an entry without expiry never expires")
	keys, err := s.Subscriptions(ctx, "legacy")
	require.NoError(t, err)
	require.Equal(t, []storage.Key{k}, keys)
	require.NoError(t, s.Close())

	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		if err := tx.Bucket([]byte("subs_by_request")).Bucket(rk).Put([]byte("legacy"), []byte("bad")); err != nil {
			return err
		}
		return tx.Bucket([]byte("subs_by_connection")).Bucket([]byte("legacy")).Put(rk, []byte("bad"))
	})

	s, err = bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	_, err = s.Subscribers(ctx, k)
	require.Error(t, err)
	_, err = s.Subscriptions(ctx, "legacy")
	require.Error(t, err)
	_, err = s.Sweep(ctx, now)
	require.Error(t, err)
}

// TestRecordWithoutStalls checks that a request written before stalls were
// counted (no "stalls" field) reads as zero stalls and counts from there,
// and that the count survives a reopen.
func TestRecordWithoutStalls(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "streamer.db")
	k := storage.Key{Tenant: "t", Subject: "alice", ID: "old"}
	now := time.Now().UTC().Truncate(time.Millisecond)

	s, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	lease := now.Add(-time.Minute).Format(time.RFC3339Nano)
	rawUpdate(t, path, func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("requests")).Put([]byte(k.String()), []byte(
			`{"action":"report","status":"running","attempt":2,"not_before":"0001-01-01T00:00:00Z","lease_until":"`+lease+`",`+
				`"created_at":"0001-01-01T00:00:00Z","updated_at":"0001-01-01T00:00:00Z","expires_at":"0001-01-01T00:00:00Z"}`))
	})

	s, err = bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	r, err := s.GetRequest(ctx, k)
	require.NoError(t, err)
	require.Equal(t, storage.StatusRunning, r.Status)
	require.Equal(t, 2, r.Attempt)
	require.Zero(t, r.Stalls)
	due, err := s.ListDue(ctx, now, 0)
	require.NoError(t, err)
	require.Len(t, due, 1, "its lease has passed")

	r, err = s.ClaimRequest(ctx, k, storage.Claim{Now: now, LeaseUntil: now.Add(time.Minute)})
	require.NoError(t, err)
	require.Equal(t, 3, r.Attempt)
	require.Equal(t, 1, r.Stalls, "a takeover")
	require.NoError(t, s.Close())

	s, err = bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	r, err = s.GetRequest(ctx, k)
	require.NoError(t, err)
	require.Equal(t, 1, r.Stalls)
}
