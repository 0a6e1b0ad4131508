package local

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// handOffAfter is how long a message may be handled on the goroutine that
// read it before another goroutine goes on reading the connection.
const handOffAfter = time.Millisecond

// reading is how a connection's messages are read and handled. A message
// is handled on the goroutine that read it: most are done in microseconds,
// and handing each to another goroutine cost a wake-up of that goroutine
// per message (echo ran at 0.6× a bare server's rate on one connection).
// So that a long call does not stop the reading (a cancel must get
// through while a sync request runs), a message still running after
// handOffAfter passes the reading on, the "baton", to a new goroutine,
// which handles what it reads the same way. The connection's own goroutine
// (the owner, in ServeHTTP), once its call has returned, waits for the
// baton to come back: the next goroutine that reads a message while the
// owner waits hands it to the owner and ends. So an idle connection holds
// its owner alone, and a busy one a goroutine per long call running (at
// most Config.MaxInFlight), the one reading, and the owner.
type reading struct {
	slots chan struct{} // a slot per Message call running: at most MaxInFlight
	baton chan Inbound  // the waiting owner takes a message, and the reading, back
	ended chan struct{} // closed when the reading ended
	once  sync.Once

	timer *time.Timer // passes the baton when the call of the round runs long

	mu     sync.Mutex
	rounds uint64 // calls started by the baton holder
	round  uint64 // the holder's call in progress, 0 if none
	passed uint64 // the last round whose baton passed: they pass in order
}

// readingOf returns lc's reading, made on first use (only the connection's
// reader calls it, so no lock is needed to make it).
func (g *Gateway) readingOf(lc *liveConn) *reading {
	if lc.rd != nil {
		return lc.rd
	}
	rd := &reading{
		slots: make(chan struct{}, g.cfg.MaxInFlight),
		baton: make(chan Inbound),
		ended: make(chan struct{}),
	}
	rd.timer = time.AfterFunc(time.Duration(math.MaxInt64), func() {
		rd.mu.Lock()
		pass := rd.round > rd.passed // rd.round is 0 when no call runs
		if pass {
			rd.passed = rd.round
		}
		rd.mu.Unlock()
		if pass {
			g.wg.Go(func() { g.helpRead(lc, rd) })
		}
	})
	lc.rd = rd
	return rd
}

// end marks the reading over, for the owner waiting for the baton.
func (rd *reading) end() {
	if rd == nil {
		return
	}
	rd.once.Do(func() {
		close(rd.ended)
		rd.timer.Stop()
	})
}

// readLoop is the owner's reading: it returns once the reading has ended,
// when the connection failed or closed, or a close was requested, and the
// owner's own call has returned. The goroutine that read last ends the
// connection (see Gateway.end). The calls of other goroutines may still be
// running; they end once their call returns.
func (g *Gateway) readLoop(lc *liveConn) {
	for {
		m, ok := g.readOne(lc)
		if !ok {
			lc.rd.end()
			g.end(lc)
			return
		}
		for !g.runInline(lc, m) {
			// Another goroutine reads now: wait for the baton. If the
			// reading ends meanwhile, that goroutine ends the connection.
			select {
			case m = <-lc.rd.baton:
			case <-lc.rd.ended:
				return
			}
		}
	}
}

// helpRead reads for the owner while it is busy with a long call.
func (g *Gateway) helpRead(lc *liveConn, rd *reading) {
	for {
		m, ok := g.readOne(lc)
		if !ok {
			rd.end()
			g.end(lc)
			return
		}
		select {
		case rd.baton <- m: // the owner is free: it reads again
			return
		default:
		}
		if !g.runInline(lc, m) {
			return
		}
	}
}

// readOne reads the next data message.
func (g *Gateway) readOne(lc *liveConn) (Inbound, bool) {
	// A context that is never canceled costs coder/websocket no watcher
	// per read; closing the connection ends the read instead.
	typ, data, err := lc.ws.Read(context.Background())
	if err != nil {
		g.log.Debug().Err(err).Str("connection_id", lc.c.ID).
			Int("close_status", int(websocket.CloseStatus(err))).Msg("local: read ended")
		return Inbound{}, false
	}
	lc.touch()
	if !g.reserveIn(lc, int64(len(data))) {
		return Inbound{}, false
	}
	return Inbound{Data: data, Binary: typ == websocket.MessageBinary}, true
}

// runInline runs m's Message call on this goroutine, the baton holder's,
// once a slot is free (backpressure: while MaxInFlight calls run, nothing
// more is read), and reports whether it still holds the baton after: false
// when the call ran long and the reading went on elsewhere, or the
// connection is closing.
func (g *Gateway) runInline(lc *liveConn, m Inbound) bool {
	rd := g.readingOf(lc)
	select {
	case rd.slots <- struct{}{}:
	case <-lc.closing:
		lc.inBytes.Add(-int64(len(m.Data)))
		rd.end()
		g.end(lc)
		return false
	}
	rd.mu.Lock()
	rd.rounds++
	mine := rd.rounds
	rd.round = mine
	rd.mu.Unlock()
	rd.timer.Reset(handOffAfter)

	g.handle(lc, m)
	<-rd.slots

	rd.mu.Lock()
	// Passed, or a later round started: that one began only because this
	// one was passed (and may have been passed in turn).
	passed := rd.passed >= mine
	if rd.round == mine {
		rd.round = 0
	}
	rd.mu.Unlock()
	if !passed {
		// Still the holder: the timer is this round's, nobody else's.
		rd.timer.Stop()
	}
	return !passed
}
