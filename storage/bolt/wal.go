package bolt

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/streamer-go/streamer/storage"
)

// The event log (write-ahead log) makes a progress event durable with one
// append and one fdatasync of a file, instead of a bbolt commit, which
// rewrites a few B+tree pages per request and syncs twice. Events in the
// log and not yet in the bbolt file are "pending": readers see them from
// memory, and they are copied into the file (flushed) in large batches,
// off the path of the writes that wait:
//   - by a flush goroutine, once enough are pending or they have waited
//     long enough; appends keep going to a new segment meanwhile;
//   - by the committer, before any other write, in the same transaction, so
//     every other write (a finish, a claim, a delete) sees them;
//   - by Close, and by Open for what a crash left.
//
// Each flush stores the log sequence number (LSN) it reached in the meta
// bucket, in its transaction, so a record is copied at most once even when
// its segment outlives the flush (a crash before the file was removed).
//
// A segment is <db path>.wal.<n>, a sequence of records:
//
//	uint32 length of the rest  | uint32 CRC-32C of the rest |
//	uint64 LSN | uint16 key length | key | uint64 seq | event JSON
//
// all big-endian, with consecutive LSNs. A record is acknowledged only
// after the fdatasync that follows its write, so a damaged record can only
// be the last one of a segment, from a write the crash interrupted:
// reading stops there, and at a record whose LSN does not follow (one of
// the file's earlier use, see spareName).

// Flush thresholds: a flush starts once this many events or bytes are
// pending, or once the oldest pending event has waited flushAfter.
const (
	flushRecords = 4096
	flushBytes   = 4 << 20
	flushAfter   = time.Second
)

var (
	keyWALApplied = []byte("wal_applied") // the LSN flushes have reached
	crcTable      = crc32.MakeTable(crc32.Castagnoli)
	errWALRecord  = errors.New("damaged record")
)

// logRecord is one event in the log.
type logRecord struct {
	lsn   uint64
	rk    string
	seq   int64
	value []byte // the event's JSON, as stored in the events bucket
	// fence, in a record not yet logged, refuses the append for the
	// request's fence (its status, attempt and subscriber version).
	fence func(r storage.Request) error
}

func (r logRecord) size() int { return 8 + 2 + len(r.rk) + 8 + len(r.value) }

func (r logRecord) appendTo(buf []byte) []byte {
	start := len(buf)
	buf = binary.BigEndian.AppendUint32(buf, uint32(r.size()))
	buf = binary.BigEndian.AppendUint32(buf, 0) // the CRC, below
	body := len(buf)
	buf = binary.BigEndian.AppendUint64(buf, r.lsn)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(r.rk)))
	buf = append(buf, r.rk...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.seq))
	buf = append(buf, r.value...)
	binary.BigEndian.PutUint32(buf[start+4:], crc32.Checksum(buf[body:], crcTable))
	return buf
}

// readRecords decodes the records of one segment, stopping without error
// at the first incomplete or damaged one (the tail a crash cut short).
func readRecords(data []byte) []logRecord {
	var out []logRecord
	for len(data) >= 8 {
		n := int(binary.BigEndian.Uint32(data))
		sum := binary.BigEndian.Uint32(data[4:])
		if n < 18 || len(data)-8 < n {
			break
		}
		body := data[8 : 8+n]
		if crc32.Checksum(body, crcTable) != sum {
			break
		}
		r, err := decodeRecord(body)
		if err != nil {
			break
		}
		if len(out) > 0 && r.lsn != out[len(out)-1].lsn+1 {
			break // a record of the segment's earlier use, as the spare
		}
		out = append(out, r)
		data = data[8+n:]
	}
	return out
}

func decodeRecord(body []byte) (logRecord, error) {
	lsn := binary.BigEndian.Uint64(body)
	kl := int(binary.BigEndian.Uint16(body[8:]))
	if len(body) < 18+kl {
		return logRecord{}, errWALRecord
	}
	rk := string(body[10 : 10+kl])
	seq := int64(binary.BigEndian.Uint64(body[10+kl:]))
	return logRecord{lsn: lsn, rk: rk, seq: seq, value: bytes.Clone(body[18+kl:])}, nil
}

// wal is the log's files. Only the committer writes it; the flush
// goroutine removes the segments it sealed.
type wal struct {
	base string   // <db path>.wal
	f    *os.File // the segment appended to
	n    uint64   // its number
	size int64    // its length
	next uint64   // the next LSN
	// broken is set when a failed append could not be undone: the log may
	// hold a record its writer was told failed, so nothing more is logged.
	broken error
	reused atomic.Int64 // segments started in the spare, for tests
}

func segmentName(base string, n uint64) string { return fmt.Sprintf("%s.%020d", base, n) }

// segments lists the existing segments of base, in order.
func segments(base string) ([]uint64, error) {
	names, err := filepath.Glob(base + ".*")
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, name := range names {
		n, err := strconv.ParseUint(strings.TrimPrefix(name, base+"."), 10, 64)
		if err != nil {
			continue // not a segment
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// recoverWAL copies into db every record of the segments of base that no
// flush copied, removes the segments and opens a new one.
func (s *Store) recoverWAL(base string) (*wal, error) {
	ns, err := segments(base)
	if err != nil {
		return nil, err
	}
	var applied uint64
	if err := s.guard(func() error {
		return s.db.View(func(tx *bbolt.Tx) error {
			applied = walApplied(tx)
			return nil
		})
	}); err != nil {
		return nil, err
	}
	var recs []logRecord
	last := applied
	for _, n := range ns {
		data, err := os.ReadFile(segmentName(base, n))
		if err != nil {
			return nil, err
		}
		for _, r := range readRecords(data) {
			if r.lsn > applied {
				recs = append(recs, r)
			}
			last = max(last, r.lsn)
		}
	}
	if len(recs) > 0 {
		err := s.guard(func() error {
			return s.db.Update(func(tx *bbolt.Tx) error { return applyRecords(tx, recs, last) })
		})
		if err != nil {
			return nil, fmt.Errorf("copying the event log into the file: %w", err)
		}
	}
	w := &wal{base: base, next: last + 1}
	if len(ns) > 0 {
		w.n = ns[len(ns)-1] + 1
	}
	if err := w.open(); err != nil {
		return nil, err
	}
	if err := removeSegments(base, ns); err != nil {
		return nil, err
	}
	return w, nil
}

func walApplied(tx *bbolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyWALApplied); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// applyRecords copies recs into the events bucket and records that flushes
// reached lsn. A record whose request is gone or whose seq is taken is
// skipped: the check that admitted it ran against the file as it stands,
// so neither happens unless a record is copied twice.
func applyRecords(tx *bbolt.Tx, recs []logRecord, lsn uint64) error {
	reqs := tx.Bucket(bucketRequests)
	for _, r := range recs {
		rk := []byte(r.rk)
		if reqs.Get(rk) == nil {
			continue
		}
		err := putEvent(tx, rk, r.seq, r.value)
		if err != nil && !errors.Is(err, storage.ErrConflict) {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(keyWALApplied, binary.BigEndian.AppendUint64(nil, lsn))
}

// segmentCap is the size past which a segment is replaced by a new one
// once every record in it is in the file.
const segmentCap = 8 << 20

// spareName is where a segment whose records are all in the file waits to
// be reused: writing over a file's existing blocks changes no metadata, so
// its fsync needs no journal commit, and costs less.
func spareName(base string) string { return base + ".spare" }

// open starts segment w.n, in the spare file when there is one.
func (w *wal) open() error {
	name := segmentName(w.base, w.n)
	flag := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if err := os.Rename(spareName(w.base), name); err == nil {
		// Its old records have LSNs below any new one: readRecords stops
		// at the first of them.
		flag = os.O_WRONLY
		w.reused.Add(1)
	}
	f, err := os.OpenFile(name, flag, 0o600)
	if err != nil {
		return err
	}
	w.f, w.size = f, 0
	return syncDir(w.base)
}

// append writes buf after the segment's last record and syncs it. When
// that fails, the segment is cut back to where it was, so no record of buf
// can be read back; when that fails too, the log is broken.
func (w *wal) append(buf []byte) error {
	if w.broken != nil {
		return w.broken
	}
	_, err := w.f.WriteAt(buf, w.size)
	if err == nil {
		err = fdatasync(w.f)
	}
	if err == nil {
		w.size += int64(len(buf))
		return nil
	}
	err = fmt.Errorf("writing the event log %s: %w", w.f.Name(), err)
	if terr := w.f.Truncate(w.size); terr != nil {
		w.broken = fmt.Errorf("%w; cutting it back failed too, so the store logs no more events: %w", err, terr)
	} else if serr := fdatasync(w.f); serr != nil {
		w.broken = fmt.Errorf("%w; syncing it after cutting it back failed too, so the store logs no more events: %w", err, serr)
	}
	return err
}

// rotate starts a new segment and returns the numbers of those before it.
func (w *wal) rotate() ([]uint64, error) {
	old := w.n
	w.n++
	prev := w.f
	if err := w.open(); err != nil {
		w.n = old
		return nil, err
	}
	_ = prev.Close()
	ns, err := segments(w.base)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(ns, func(n uint64) bool { return n >= w.n }), nil
}

// applied is called once every record in the log is in the file: the
// segments before the current one go, and the current one is replaced
// when it has grown past segmentCap. Records left behind are harmless:
// Open skips those the file has.
func (w *wal) applied() error {
	if w.size >= segmentCap {
		if _, err := w.rotate(); err != nil {
			return err
		}
	}
	ns, err := segments(w.base)
	if err != nil {
		return err
	}
	return retire(w.base, slices.DeleteFunc(ns, func(n uint64) bool { return n >= w.n }))
}

func (w *wal) close() error {
	if w.f == nil {
		return nil
	}
	return w.f.Close()
}

// retire disposes of the segments ns of base, whose records are all in
// the file: the last becomes the spare, when there is none, and the others
// are removed.
func retire(base string, ns []uint64) error {
	if len(ns) == 0 {
		return nil
	}
	last := ns[len(ns)-1]
	if _, err := os.Stat(spareName(base)); errors.Is(err, os.ErrNotExist) {
		if err := os.Rename(segmentName(base, last), spareName(base)); err == nil {
			ns = ns[:len(ns)-1]
		}
	}
	return removeSegments(base, ns)
}

// removeLog removes every file of the log of base.
func removeLog(base string) error {
	ns, err := segments(base)
	if err != nil {
		return err
	}
	return errors.Join(removeSegments(base, ns), removeFile(spareName(base)))
}

// removeSegments removes the segments ns of base; one already gone is no
// error.
func removeSegments(base string, ns []uint64) error {
	var errs []error
	for _, n := range ns {
		errs = append(errs, removeFile(segmentName(base, n)))
	}
	return errors.Join(errs...)
}

func removeFile(name string) error {
	if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// pending is the logged events not yet copied into the file, for readers
// and for the committer's seq check. A reader takes its copy before it
// opens its transaction: a flush removes records only after its commit, so
// every record is in the copy or in the transaction's view (or both: the
// reader keeps one of each seq).
type pending struct {
	mu     sync.RWMutex
	byReq  map[string][]logRecord // in LSN order
	n      int
	bytes  int
	oldest time.Time // when the oldest record was added
	last   uint64    // the highest LSN added
}

func newPending() *pending { return &pending{byReq: map[string][]logRecord{}} }

func (p *pending) add(recs []logRecord, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 {
		p.oldest = now
	}
	for _, r := range recs {
		p.byReq[r.rk] = append(p.byReq[r.rk], r)
		p.n++
		p.bytes += r.size()
		p.last = r.lsn
	}
}

// has reports whether seq of rk is pending.
func (p *pending) has(rk string, seq int64) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, r := range p.byReq[rk] {
		if r.seq == seq {
			return true
		}
	}
	return false
}

// of returns a copy of rk's pending records.
func (p *pending) of(rk string) []logRecord {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return slices.Clone(p.byReq[rk])
}

// byRequest returns a copy of the pending records of every request.
func (p *pending) byRequest() map[string][]logRecord {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make(map[string][]logRecord, len(p.byReq))
	for rk, rs := range p.byReq {
		out[rk] = slices.Clone(rs)
	}
	return out
}

// all returns every pending record in LSN order, and the highest LSN.
func (p *pending) all() ([]logRecord, uint64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]logRecord, 0, p.n)
	for _, rs := range p.byReq {
		out = append(out, rs...)
	}
	slices.SortFunc(out, func(a, b logRecord) int { return cmp.Compare(a.lsn, b.lsn) })
	return out, p.last
}

// removeThrough drops the records up to lsn, copied into the file.
func (p *pending) removeThrough(lsn uint64, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for rk, rs := range p.byReq {
		i := 0
		for i < len(rs) && rs[i].lsn <= lsn {
			p.n--
			p.bytes -= rs[i].size()
			i++
		}
		if i == len(rs) {
			delete(p.byReq, rk)
		} else if i > 0 {
			p.byReq[rk] = slices.Clone(rs[i:])
		}
	}
	if p.n > 0 {
		// Not exact (the oldest left came after the flush began), and
		// early rather than late.
		p.oldest = now
	}
}

// stats returns how many records and bytes are pending and since when.
func (p *pending) stats() (n, size int, oldest time.Time) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.n, p.bytes, p.oldest
}

// decodeRecords decodes rs as events, dropping those expired at now.
func decodeRecords(rs []logRecord, now time.Time) ([]storage.Event, error) {
	out := make([]storage.Event, 0, len(rs))
	for _, r := range rs {
		ev, err := decodeEvent([]byte(r.rk), r.value)
		if err != nil {
			return nil, err
		}
		if !expired(ev.ExpiresAt, now) {
			out = append(out, ev)
		}
	}
	return out, nil
}

// mergeEvents merges two lists of events in seq order, keeping one event
// of each seq.
func mergeEvents(a, b []storage.Event) []storage.Event {
	if len(b) == 0 {
		return a
	}
	out := append(a, b...)
	slices.SortStableFunc(out, func(x, y storage.Event) int { return cmp.Compare(x.Seq, y.Seq) })
	return slices.CompactFunc(out, func(x, y storage.Event) bool { return x.Seq == y.Seq })
}
