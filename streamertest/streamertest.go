package streamertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/progress"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport"
	"github.com/streamer-go/streamer/transport/transporttest"
)

// Defaults of a run.
const (
	// ConnectionID is the id of the connection the kit sends from.
	ConnectionID = "streamertest"
	// DefaultRequestID is the request id sent when [Options].RequestID is
	// empty.
	DefaultRequestID = "streamertest-1"
	// DefaultSubject is the subject of the default principal.
	DefaultSubject = "streamertest"
	// HandlerAction is the action name [RunHandler] registers its handler
	// under.
	HandlerAction = "handler"
)

// maxDeliveries bounds how many times the kit hands one request to the
// processor, so a request that never ends fails the run instead of hanging.
const maxDeliveries = 100

// ErrNoReply is returned when the connection received nothing that ends
// the request: no response, no error, no terminal event. A client would
// wait forever.
var ErrNoReply = errors.New("streamertest: the connection received no reply that ends the request")

// ErrNotAsync is returned by [Running.Cancel], and by a run with
// [WithCancelAfter], when the request was not admitted as async: the
// protocol can cancel stored (async) requests only.
var ErrNotAsync = errors.New("streamertest: the request was not admitted as async, and only async requests can be canceled")

// Options configure one run. Their zero value runs the action as registered,
// from the default principal, with no metadata and no cancel. Set them with
// the WithX functions.
type Options struct {
	// Mode, when ModeSync or ModeAsync, overrides the action's
	// ActionOptions.Mode. Default: the action's own; ModeAuto is decided
	// by the router from the estimate.
	Mode streamer.Mode
	// Timeout, when positive, overrides the action's ActionOptions.Timeout:
	// the handler's context ends after it and the client gets TIMEOUT.
	Timeout time.Duration
	// Deadline, when set, bounds the handler like Timeout, measured from
	// the start of the run. The earlier of the two wins.
	Deadline time.Time
	// CancelAfter, when positive, makes the client send a cancel for the
	// request as soon as it has received that many progress events. Async
	// requests only.
	CancelAfter int
	// Principal is the connection's verified identity. Default: subject
	// [DefaultSubject], granted the scopes the action requires.
	Principal *streamer.Principal
	// Metadata is sent in the request frame.
	Metadata map[string]string
	// RequestID is the frame's id. Default [DefaultRequestID].
	RequestID string
	// Config, when set, is called on the App's Config before the App is
	// built: add App-wide Middleware, a Logger, a Clock, a
	// CoalesceInterval. The kit sets Store, Sender and Plugins after it.
	Config func(*streamer.Config)
}

// WithMode runs the action sync or async, whatever its ActionOptions.Mode.
func WithMode(m streamer.Mode) func(*Options) { return func(o *Options) { o.Mode = m } }

// WithTimeout sets the handler's timeout, as ActionOptions.Timeout does. A
// handler still running after d sees its context end, and the client gets
// TIMEOUT. Default: the action's timeout.
func WithTimeout(d time.Duration) func(*Options) { return func(o *Options) { o.Timeout = d } }

// WithDeadline ends the handler's context at t, as [WithTimeout] with the
// time left when the run starts. A deadline already past gives TIMEOUT
// without the handler doing any work.
func WithDeadline(t time.Time) func(*Options) { return func(o *Options) { o.Deadline = t } }

// WithCancelAfter makes the client cancel the request once it has received
// n progress events (n ≥ 1), through the protocol's cancel action: the
// handler's context is canceled before its n-th Report returns, and the
// request ends with CANCELED. The request must run async; otherwise the run
// returns [ErrNotAsync]. To cancel at another moment, use [Start].
func WithCancelAfter(n int) func(*Options) { return func(o *Options) { o.CancelAfter = n } }

// WithPrincipal sets the connection's verified identity. Default: subject
// [DefaultSubject], granted the scopes the action requires.
func WithPrincipal(p streamer.Principal) func(*Options) {
	return func(o *Options) { o.Principal = &p }
}

// WithMetadata sets the request frame's metadata.
func WithMetadata(md map[string]string) func(*Options) { return func(o *Options) { o.Metadata = md } }

// WithRequestID sets the request frame's id. Default [DefaultRequestID].
func WithRequestID(id string) func(*Options) { return func(o *Options) { o.RequestID = id } }

// WithConfig changes the App's Config before the App is built. The kit
// starts from a Config with progress coalescing off (CoalesceInterval -1),
// so every Report is one progress event; fn may set it back, add App-wide
// Middleware, a Logger or a fake Clock. A Clock drives timestamps,
// coalescing and retry delays; the handler's timeout is a context deadline
// and runs on real time whatever the Clock. Store, Sender and Plugins are
// the kit's and are set after fn.
func WithConfig(fn func(*streamer.Config)) func(*Options) { return func(o *Options) { o.Config = fn } }

// Run runs action with payload, as a client of an App serving it alone
// would: sync or async as the router decides (see [WithMode]), and for
// async through the processor until the request ends. It returns what the
// connection received. payload is sent as is when it is a json.RawMessage,
// omitted when nil, and encoded with encoding/json otherwise.
//
// ctx is the runtime's context, as the router's and the processor's are
// given: canceling it stops the run and Run returns its error. Bound the
// handler with [WithTimeout] instead. The returned error reports a run that
// could not be made or did not end; the handler's own failure is in
// [Outcome].Err.
func Run(ctx context.Context, action streamer.Action, payload any, optFns ...func(*Options)) (*Outcome, error) {
	r, err := Start(ctx, streamer.Plugin{Name: "streamertest", Actions: []streamer.Action{action}}, action.Name, payload, optFns...)
	if err != nil {
		return nil, err
	}
	return r.Wait()
}

// RunPlugin runs the named action of plugin, like [Run], inside the
// plugin's middleware. An action the plugin does not have gets
// INVALID_ACTION, as a client would.
func RunPlugin(ctx context.Context, plugin streamer.Plugin, action string, payload any, optFns ...func(*Options)) (*Outcome, error) {
	r, err := Start(ctx, plugin, action, payload, optFns...)
	if err != nil {
		return nil, err
	}
	return r.Wait()
}

// RunHandler runs h, like [Run], as an action named [HandlerAction] with
// default options: sync unless h implements [streamer.Estimator] with a
// long estimate, or [WithMode] says otherwise.
func RunHandler(ctx context.Context, h streamer.Handler, payload any, optFns ...func(*Options)) (*Outcome, error) {
	return Run(ctx, streamer.Action{Name: HandlerAction, Handler: h}, payload, optFns...)
}

// Running is a run started by [Start]. Its methods are safe for concurrent
// use.
type Running struct {
	k    *kit
	done chan struct{}
	out  *Outcome
	err  error
}

// Start starts a run of the named action of plugin, like [RunPlugin], and
// returns without waiting for it, so the test can [Running.Cancel] it at any
// moment. Call [Running.Wait] to end it: no goroutine of the run outlives
// Wait. Start returns an error when the App cannot be built (an invalid
// plugin) or the payload cannot be encoded.
func Start(ctx context.Context, plugin streamer.Plugin, action string, payload any, optFns ...func(*Options)) (*Running, error) {
	var o Options
	for _, fn := range optFns {
		fn(&o)
	}
	k, err := newKit(plugin, action, payload, o)
	if err != nil {
		return nil, err
	}
	r := &Running{k: k, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.out, r.err = k.run(ctx)
	}()
	return r, nil
}

// Wait waits for the run to end and returns what the connection received.
func (r *Running) Wait() (*Outcome, error) {
	<-r.done
	return r.out, r.err
}

// Cancel sends the protocol's cancel for the request from the connection,
// as a client would. It first waits until the router acknowledged the
// request (or refused it, or ran it sync) or ctx ends; a request that was
// not admitted as async returns [ErrNotAsync]. The request then ends with
// CANCELED, unless it finished first. The router's status reply is in
// [Outcome].Messages.
func (r *Running) Cancel(ctx context.Context) error {
	select {
	case <-r.k.admitted:
	case <-ctx.Done():
		return ctx.Err()
	}
	if !r.k.isAsync() {
		return ErrNotAsync
	}
	return r.k.cancel(ctx)
}

// kit is one run: an App of its own on a memory store and a recorder.
type kit struct {
	app   *streamer.App
	store *memory.Store
	rec   *transporttest.Recorder
	clock *jumpClock
	conn  streamer.Conn
	key   storage.Key
	frame []byte
	after int

	admitted  chan struct{} // closed on the acknowledgment, or when HandleMessage returns
	admitOnce sync.Once
	mu        sync.Mutex
	async     bool
	progress  int
}

func newKit(plugin streamer.Plugin, action string, payload any, o Options) (*kit, error) {
	raw, err := encodePayload(payload)
	if err != nil {
		return nil, err
	}
	id := o.RequestID
	if id == "" {
		id = DefaultRequestID
	}
	frame, err := json.Marshal(streamer.Frame{Action: action, ID: id, Payload: raw, Metadata: o.Metadata})
	if err != nil {
		return nil, fmt.Errorf("streamertest: encode the request frame: %w", err)
	}
	plugin.Actions = append([]streamer.Action(nil), plugin.Actions...)
	var scopes []string
	for i := range plugin.Actions {
		a := &plugin.Actions[i]
		if a.Name != action {
			continue
		}
		scopes = a.Options.Scopes
		if o.Mode == streamer.ModeSync || o.Mode == streamer.ModeAsync {
			a.Options.Mode = o.Mode
		}
		if d := handlerTimeout(o); d > 0 {
			a.Options.Timeout = d
		}
	}
	p := o.Principal
	if p == nil {
		p = &streamer.Principal{Subject: DefaultSubject, Scopes: scopes}
	}
	k := &kit{
		store: memory.New(), rec: transporttest.NewRecorder(),
		conn:  streamer.Conn{ID: ConnectionID, Principal: p},
		key:   storage.Key{Tenant: p.Tenant, Subject: p.Subject, ID: id},
		frame: frame, after: o.CancelAfter,
		admitted: make(chan struct{}),
	}
	cfg := streamer.Config{CoalesceInterval: -1}
	if o.Config != nil {
		o.Config(&cfg)
	}
	base := cfg.Clock
	if base == nil {
		base = progress.System
	}
	k.clock = &jumpClock{base: base}
	cfg.Clock = k.clock
	cfg.Store, cfg.Sender, cfg.Plugins = k.store, transport.SenderFunc(k.send), []streamer.Plugin{plugin}
	if k.app, err = streamer.New(cfg); err != nil {
		return nil, err
	}
	return k, nil
}

// handlerTimeout is the timeout o asks for, 0 for none: the earlier of
// Timeout and Deadline, a deadline measured from now.
func handlerTimeout(o Options) time.Duration {
	d := o.Timeout
	if !o.Deadline.IsZero() {
		left := max(time.Until(o.Deadline), time.Nanosecond)
		if d <= 0 || left < d {
			d = left
		}
	}
	return d
}

func encodePayload(payload any) (json.RawMessage, error) {
	switch p := payload.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if !json.Valid(p) {
			return nil, errors.New("streamertest: the payload is not valid JSON")
		}
		return p, nil
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("streamertest: encode the payload: %w", err)
	}
	return raw, nil
}
