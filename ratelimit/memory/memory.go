// Package memory is the in-process [ratelimit.Limiter], for the embedded
// runtime (streamer dev) and for tests. Its buckets live in one process:
// several processes each get their own, so use the DynamoDB backend where
// requests of one principal may reach several processes (Lambda).
package memory

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/streamer-go/streamer/ratelimit"
)

// DefaultMaxKeys is the number of buckets a [Limiter] holds when
// [Options.MaxKeys] is zero.
const DefaultMaxKeys = 100_000

// Options configure [New]. The zero value is usable.
type Options struct {
	// MaxKeys bounds the buckets held, so memory stays bounded whatever
	// keys the clients make: at the bound, the bucket used least recently
	// is dropped. A bucket that had refilled to its burst is the same as
	// no bucket, so dropping it changes nothing; one still refilling
	// starts over full, and may then admit up to one burst too many
	// ([Limiter.Evicted] counts those; raise MaxKeys above the number of
	// keys active within a fill time to avoid it). Zero means
	// [DefaultMaxKeys].
	MaxKeys int
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Limiter is an in-process token-bucket [ratelimit.Limiter]. It is safe
// for concurrent use.
type Limiter struct {
	now     func() time.Time
	maxKeys int

	mu      sync.Mutex
	buckets map[string]*list.Element // of *bucket
	lru     list.List                // front: least recently used
	evicted int                      // buckets dropped before they refilled
}

type bucket struct {
	key   string
	rule  ratelimit.Rule
	state ratelimit.State
}

// New returns an empty Limiter.
func New(opts Options) *Limiter {
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Limiter{now: opts.Now, maxKeys: opts.MaxKeys, buckets: map[string]*list.Element{}}
}

// Take implements [ratelimit.Limiter]. It never fails but for invalid
// arguments.
func (l *Limiter) Take(_ context.Context, key string, rule ratelimit.Rule, n int) (ratelimit.Decision, error) {
	r, err := ratelimit.Check(key, rule, n)
	if err != nil {
		return ratelimit.Decision{}, err
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.buckets[key]
	var b *bucket
	if ok {
		b = el.Value.(*bucket)
		b.rule = r
	} else {
		b = &bucket{key: key, rule: r}
	}
	st, d := r.Take(b.state, now, n)
	if !d.Allowed {
		// Nothing changed; a new bucket is never refused (n <= Burst), so
		// b is already held.
		return d, nil
	}
	b.state = st
	if ok {
		l.lru.MoveToBack(el)
		return d, nil
	}
	l.evict(now)
	l.buckets[key] = l.lru.PushBack(b)
	return d, nil
}

// evict makes room for one bucket, dropping the least recently used.
func (l *Limiter) evict(now time.Time) {
	for l.lru.Len() >= l.maxKeys {
		front := l.lru.Front()
		b := front.Value.(*bucket)
		if b.rule.At(b.state, now) < float64(b.rule.Burst) {
			l.evicted++
		}
		l.lru.Remove(front)
		delete(l.buckets, b.key)
	}
}

// Len returns the number of buckets held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// Evicted returns how many buckets were dropped before they had refilled
// (each may have admitted up to a burst too many).
func (l *Limiter) Evicted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.evicted
}

var _ ratelimit.Limiter = (*Limiter)(nil)
