package bolt_test

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/bolt"
)

// BenchmarkAppendEventParallel appends 256-byte progress events from 100
// goroutines at once, one running request each, as 100 jobs reporting
// progress do. Each AppendEvent returns after the fsync that holds its
// event. It reports the committed transactions per event (commits/op).
func BenchmarkAppendEventParallel(b *testing.B) {
	const requests = 100
	s := open(b)
	ctx := context.Background()
	keys := make([]storage.Key, requests)
	seqs := make([]atomic.Int64, requests)
	now := time.Now()
	for i := range keys {
		keys[i] = storage.Key{Tenant: "t", Subject: "s", ID: "bench-" + strconv.Itoa(i)}
		require.NoError(b, s.CreateRequest(ctx, storage.Request{Key: keys[i], Status: storage.StatusQueued}))
		_, err := s.ClaimRequest(ctx, keys[i], storage.Claim{Now: now, LeaseUntil: now.Add(time.Hour)})
		require.NoError(b, err)
	}
	var next atomic.Int64
	// RunParallel starts parallelism × GOMAXPROCS goroutines: at least
	// one per request (100 on 2 cores).
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((requests + procs - 1) / procs)
	b.SetBytes(256)
	b.ReportAllocs()
	commits := bolt.Commits(s)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)-1) % requests
		ev := storage.Event{Type: "progress", Message: "working", Data: make([]byte, 256), CreatedAt: now}
		for pb.Next() {
			ev.Seq = seqs[i].Add(1)
			if err := s.AppendEvent(ctx, keys[i], 1, ev, 0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(bolt.Commits(s)-commits)/float64(b.N), "commits/op")
}
