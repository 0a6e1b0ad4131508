package local

import (
	"net"
	"sync"
	"time"
)

// Defaults of the connection limits of [Config].
const (
	// DefaultMaxConnectionsPerPrincipal is the default of
	// Config.MaxConnectionsPerPrincipal: 100 open connections.
	DefaultMaxConnectionsPerPrincipal = 100
	// DefaultNewConnectionsPerIPRate and DefaultNewConnectionsPerIPBurst
	// are the default token bucket of new connections per source address:
	// 100 a second, bursts of 200. (API Gateway allows an account 500 a
	// second.)
	DefaultNewConnectionsPerIPRate  = 100
	DefaultNewConnectionsPerIPBurst = 200
	// DefaultNewConnectionsPerPrincipalRate and
	// DefaultNewConnectionsPerPrincipalBurst are the default token bucket
	// of new connections per principal: 20 a second, bursts of 100 (a
	// principal may open its whole cap at once).
	DefaultNewConnectionsPerPrincipalRate  = 20
	DefaultNewConnectionsPerPrincipalBurst = 100
)

// Rate is a token bucket: Burst tokens, refilled at PerSecond tokens a
// second. The zero value means the default of the field; a negative
// PerSecond means no limit.
type Rate struct {
	// PerSecond is how many tokens are added each second.
	PerSecond float64
	// Burst is the bucket's size: how many may pass at once.
	Burst int
}

func (r Rate) orDefault(perSecond float64, burst int) Rate {
	if r.PerSecond == 0 {
		r.PerSecond = perSecond
	}
	if r.Burst <= 0 {
		r.Burst = burst
	}
	return r
}

// buckets is a set of token buckets by key. Full buckets are forgotten
// when the set grows large, so memory stays bounded by the keys active
// within one refill period.
type buckets struct {
	rate Rate

	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

const pruneAbove = 10000

func newBuckets(r Rate) *buckets { return &buckets{rate: r, m: make(map[string]*bucket)} }

// take takes one token of key's bucket and reports whether there was one.
func (b *buckets) take(key string, now time.Time) bool {
	if b == nil || b.rate.PerSecond < 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	bk := b.m[key]
	if bk == nil {
		if len(b.m) >= pruneAbove {
			b.prune(now)
		}
		bk = &bucket{tokens: float64(b.rate.Burst), at: now}
		b.m[key] = bk
	}
	bk.tokens = min(float64(b.rate.Burst), bk.tokens+now.Sub(bk.at).Seconds()*b.rate.PerSecond)
	bk.at = now
	if bk.tokens < 1 {
		return false
	}
	bk.tokens--
	return true
}

func (b *buckets) prune(now time.Time) {
	for k, bk := range b.m {
		if bk.tokens+now.Sub(bk.at).Seconds()*b.rate.PerSecond >= float64(b.rate.Burst) {
			delete(b.m, k)
		}
	}
}

// sourceIP is the host of a request's RemoteAddr.
func sourceIP(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	return remoteAddr
}

// admitPrincipal counts a new connection of principal against the
// per-principal rate and open cap. ok false means refused (nothing
// counted); otherwise the caller must call leavePrincipal once the
// connection ends.
func (g *Gateway) admitPrincipal(principal string, now time.Time) (ok bool, reason string) {
	if !g.principalRate.take(principal, now) {
		return false, "too many new connections for this principal: try again later"
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if limit := g.cfg.MaxConnectionsPerPrincipal; limit > 0 && g.open[principal] >= limit {
		return false, "too many open connections for this principal"
	}
	g.open[principal]++
	return true, ""
}

func (g *Gateway) leavePrincipal(principal string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open[principal]--; g.open[principal] <= 0 {
		delete(g.open, principal)
	}
}

// OpenConnections returns the number of connections principal has open
// (as counted for Config.MaxConnectionsPerPrincipal).
func (g *Gateway) OpenConnections(principal string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open[principal]
}
