package cli

import (
	"fmt"
	"net"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// pprofPrefix is where `streamer dev --pprof` and `streamer load floor`
// serve their profiles.
const pprofPrefix = "/debug/pprof/"

// maxCPUProfile bounds /debug/pprof/profile?seconds=N.
const maxCPUProfile = 5 * time.Minute

// pprofHandler serves the runtime's profiles under /debug/pprof/, to
// loopback clients only: NAME (heap, goroutine, allocs, block, mutex,
// threadcreate) in the binary format of `go tool pprof` (?debug=1 or 2 for
// text), heap?gc=1 after a garbage collection, and profile?seconds=N (1 to
// 300; default 30) a CPU profile. It is written here, not taken from
// net/http/pprof, whose import registers the handlers on
// http.DefaultServeMux of every program that links this package.
func pprofHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackRemote(r.RemoteAddr) {
			http.Error(w, "profiles are served to loopback clients only", http.StatusForbidden)
			return
		}
		name := strings.TrimPrefix(r.URL.Path, pprofPrefix)
		q := r.URL.Query()
		switch name {
		case "", "index":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			for _, p := range pprof.Profiles() {
				fmt.Fprintf(w, "%s %d\n", p.Name(), p.Count())
			}
			fmt.Fprintln(w, "profile (CPU, ?seconds=N)")
			return
		case "profile":
			secs := 30
			if v := q.Get("seconds"); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || time.Duration(n)*time.Second > maxCPUProfile {
					http.Error(w, "seconds: want 1-300", http.StatusBadRequest)
					return
				}
				secs = n
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			if err := pprof.StartCPUProfile(w); err != nil {
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			select {
			case <-time.After(time.Duration(secs) * time.Second):
			case <-r.Context().Done():
			}
			pprof.StopCPUProfile()
			return
		}
		p := pprof.Lookup(name)
		if p == nil {
			http.NotFound(w, r)
			return
		}
		if q.Get("gc") == "1" {
			runtime.GC()
		}
		debug, _ := strconv.Atoi(q.Get("debug"))
		if debug > 0 {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		} else {
			w.Header().Set("Content-Type", "application/octet-stream")
		}
		_ = p.WriteTo(w, debug)
	})
}

// loopbackRemote reports whether a request's RemoteAddr is a loopback
// address.
func loopbackRemote(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackAddr reports whether a listen address (host:port) names a
// loopback host.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
