package bolt

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"

	"github.com/streamer-go/streamer/storage"
)

func progressEvent(seq int64, data string) storage.Event {
	return storage.Event{Seq: seq, Type: "progress", Data: json.RawMessage(data), CreatedAt: time.Now()}
}

// segmentFiles returns the event log's segments of the store at path.
func segmentFiles(t *testing.T, path string) []string {
	t.Helper()
	names, err := filepath.Glob(path + ".wal.*")
	require.NoError(t, err)
	return names
}

// fileEvents returns the seqs of k's events in the bbolt file itself, not
// counting the pending ones.
func fileEvents(t *testing.T, s *Store, k storage.Key) []int64 {
	t.Helper()
	out := []int64{}
	require.NoError(t, s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketEvents).Bucket([]byte(k.String()))
		if b == nil {
			return nil
		}
		return b.ForEach(func(sk, _ []byte) error {
			out = append(out, int64(binary.BigEndian.Uint64(sk)))
			return nil
		})
	}))
	return out
}

// TestLoggedEventsAreReadBeforeTheyAreFlushed appends events that go to
// the event log only, and reads them back through every read that shows
// events; a finish, which takes the bbolt path, copies them into the file
// first.
func TestLoggedEventsAreReadBeforeTheyAreFlushed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	p := openPlugged(t)
	s := p.s
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	k := claimed(t, s, "r1")
	for seq := int64(1); seq <= 3; seq++ {
		require.NoError(t, s.AppendEvent(ctx, k, 1, progressEvent(seq, fmt.Sprintf(`{"n":%d}`, seq)), 0))
	}
	n, _, _ := s.gc.pend.stats()
	require.Equal(t, 3, n, "the events are in the log, not yet in the file")
	require.Empty(t, fileEvents(t, s, k))
	require.Len(t, segmentFiles(t, p.path), 1)

	require.Equal(t, []int64{1, 2, 3}, seqs(t, s, k))
	evs, err := s.ReadEvents(ctx, k, 1, 1)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, int64(2), evs[0].Seq)
	require.JSONEq(t, `{"n":2}`, string(evs[0].Data))
	last, err := s.LastEvent(ctx, k)
	require.NoError(t, err)
	require.Equal(t, int64(3), last.Seq)
	page, err := s.ListRequests(ctx, "t", "alice", storage.ListQuery{})
	require.NoError(t, err)
	require.Len(t, page.Requests, 1)
	require.Equal(t, int64(3), page.Requests[0].Seq, "the list shows the logged event")

	// A taken seq is refused against the log as against the file.
	require.ErrorIs(t, s.AppendEvent(ctx, k, 1, progressEvent(2, `{}`), 0), storage.ErrConflict)
	// So is a fenced append, with the fence read once and cached.
	require.ErrorIs(t, s.AppendEvent(ctx, k, 2, progressEvent(4, `{}`), 0), storage.ErrConflict)

	done := storage.Event{Seq: 4, Type: "complete", Data: json.RawMessage(`{}`), CreatedAt: time.Now()}
	require.NoError(t, s.FinishRequest(ctx, k, storage.Finish{Attempt: 1, Status: storage.StatusSucceeded, Event: done}))
	n, _, _ = s.gc.pend.stats()
	require.Zero(t, n, "the finish copied the logged events into the file")
	require.Equal(t, []int64{1, 2, 3, 4}, fileEvents(t, s, k))
	require.Equal(t, []int64{1, 2, 3, 4}, seqs(t, s, k))
	// After the finish, the cached fence is gone: the request is final.
	require.ErrorIs(t, s.AppendEvent(ctx, k, 1, progressEvent(5, `{}`), 0), storage.ErrConflict)
}

// writeSegment writes records to segment n of the store at path, and then
// tail (a torn record, say).
func writeSegment(t *testing.T, path string, n uint64, recs []logRecord, tail []byte) {
	t.Helper()
	var buf []byte
	for _, r := range recs {
		buf = r.appendTo(buf)
	}
	buf = append(buf, tail...)
	require.NoError(t, os.WriteFile(segmentName(path+".wal", n), buf, 0o600))
}

func record(t *testing.T, k storage.Key, lsn uint64, seq int64, data string) logRecord {
	t.Helper()
	v, err := json.Marshal(fromEvent(progressEvent(seq, data)))
	require.NoError(t, err)
	return logRecord{lsn: lsn, rk: k.String(), seq: seq, value: v}
}

// TestOpenReplaysTheLog leaves segments as a crash would (the last record
// torn) and checks that Open copies each record once into the file, skips
// those a flush already copied and the torn one, and removes the segments.
func TestOpenReplaysTheLog(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "streamer.db")
	s, err := Open(path, Options{})
	require.NoError(t, err)
	k := claimed(t, s, "r1")
	gone := storage.Key{Tenant: "t", Subject: "alice", ID: "never-created"}
	require.NoError(t, s.Close())
	require.Empty(t, segmentFiles(t, path), "a clean close leaves no log")

	torn := record(t, k, 4, 4, `{"n":4}`).appendTo(nil)
	writeSegment(t, path, 7, []logRecord{record(t, k, 1, 1, `{"n":1}`), record(t, k, 2, 2, `{"n":2}`)}, nil)
	writeSegment(t, path, 8, []logRecord{record(t, k, 3, 3, `{"n":3}`), record(t, gone, 4, 1, `{}`)}, torn[:len(torn)-3])
	s, err = Open(path, Options{})
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2, 3}, fileEvents(t, s, k), "copied into the file at open")
	require.Len(t, segmentFiles(t, path), 1, "the old segments are removed, a new one is open")
	evs, err := s.ReadEvents(t.Context(), k, 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, 3)
	require.JSONEq(t, `{"n":3}`, string(evs[2].Data))
	require.NoError(t, s.Close())

	// A segment that outlived its flush: records up to the LSN the file
	// reached are not copied again.
	writeSegment(t, path, 9, []logRecord{record(t, k, 4, 3, `{"n":"again"}`), record(t, k, 5, 4, `{"n":4}`)}, nil)
	s, err = Open(path, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	evs, err = s.ReadEvents(t.Context(), k, 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, 4)
	require.JSONEq(t, `{"n":3}`, string(evs[2].Data), "seq 3 is not copied twice")
	require.JSONEq(t, `{"n":4}`, string(evs[3].Data))
	// New appends get LSNs after every one seen.
	require.NoError(t, s.AppendEvent(t.Context(), k, 1, progressEvent(5, `{"n":5}`), 0))
	require.Greater(t, s.gc.wal.next, uint64(5))
}

// TestReadRecordsStopsAtTheSparesOldRecords reads a reused segment: the
// new records, then whole records of its earlier use, with lower LSNs.
func TestReadRecordsStopsAtTheSparesOldRecords(t *testing.T) {
	t.Parallel()
	k := storage.Key{Tenant: "t", Subject: "alice", ID: "r1"}
	var buf []byte
	for _, r := range []logRecord{record(t, k, 10, 7, `{}`), record(t, k, 11, 8, `{}`), record(t, k, 4, 3, `{}`), record(t, k, 5, 4, `{}`)} {
		buf = r.appendTo(buf)
	}
	recs := readRecords(buf)
	require.Len(t, recs, 2)
	require.Equal(t, []int64{7, 8}, []int64{recs[0].seq, recs[1].seq})
	// A damaged byte in the second record ends the read there too.
	buf[len(record(t, k, 10, 7, `{}`).appendTo(nil))+20] ^= 0xff
	require.Len(t, readRecords(buf), 1)
}

// TestFlushWhileAppending appends from many goroutines with flush
// thresholds low enough that flushes run all the time, beside the appends
// and the reads, and checks that every event is read back once and in
// order, before and after a reopen.
func TestFlushWhileAppending(t *testing.T) {
	t.Parallel()
	const requests, events = 20, 60
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "streamer.db")
	s, err := Open(path, Options{})
	require.NoError(t, err)
	s.gc.mu.Lock()
	s.gc.flushRecords, s.gc.flushAfter = 25, 5*time.Millisecond
	s.gc.mu.Unlock()
	keys := make([]storage.Key, requests)
	for i := range keys {
		keys[i] = claimed(t, s, "r"+strconv.Itoa(i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*requests)
	for i, k := range keys {
		wg.Go(func() {
			for seq := int64(1); seq <= events; seq++ {
				if err := s.AppendEvent(ctx, k, 1, progressEvent(seq, fmt.Sprintf(`{"r":%d,"seq":%d}`, i, seq)), 0); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() { // a reader never sees a gap or a duplicate
			for range events / 4 {
				evs, err := s.ReadEvents(ctx, k, 0, 0)
				if err != nil {
					errs <- err
					return
				}
				for j, ev := range evs {
					if ev.Seq != int64(j+1) {
						errs <- fmt.Errorf("request %d: event %d has seq %d", i, j, ev.Seq)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Positive(t, s.gc.flushes.Load(), "flushes ran")
	require.Positive(t, s.gc.wal.reused.Load(), "flushed segments were reused")
	check := func(s *Store) {
		for i, k := range keys {
			evs, err := s.ReadEvents(ctx, k, 0, 0)
			require.NoError(t, err)
			require.Len(t, evs, events, "request %d", i)
			for j, ev := range evs {
				require.Equal(t, int64(j+1), ev.Seq)
				require.JSONEq(t, fmt.Sprintf(`{"r":%d,"seq":%d}`, i, j+1), string(ev.Data))
			}
		}
	}
	check(s)
	require.NoError(t, s.Close())
	require.Empty(t, segmentFiles(t, path))
	s, err = Open(path, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	check(s)
	for _, k := range keys {
		require.Len(t, fileEvents(t, s, k), events, "all in the file after a clean close")
	}
}
