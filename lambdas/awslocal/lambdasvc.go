package awslocal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer/transport/local"
)

// Lambda's payload quotas: a synchronous invocation's request and
// response, and an asynchronous invocation's event.
const (
	maxSyncPayload  = 6 * 1024 * 1024
	maxAsyncPayload = 1024 * 1024
)

// LambdaHandler is the code of a function of a [LambdaService]: it gets an
// invocation's payload and returns its result. Its ctx has the function's
// Timeout as its deadline and carries the [Invocation]. An error is the
// function's error, reported as a Lambda runtime reports one: a
// [*FunctionError] with its type and message, any other error with the
// name of its Go type, as aws-lambda-go does.
type LambdaHandler func(ctx context.Context, payload []byte) ([]byte, error)

// FunctionError is a function's error with the type Lambda reports for it
// (the errorType of the error payload), such as "Runtime.ExitError" for a
// runtime that crashed or "Sandbox.Timedout" for a timeout.
type FunctionError struct {
	Type    string
	Message string
}

// Error returns "Type: Message".
func (e *FunctionError) Error() string { return e.Type + ": " + e.Message }

// Failure conditions of a [Failure], as Lambda names them in the records it
// sends to an on-failure destination.
const (
	// ConditionRetriesExhausted: every attempt failed.
	ConditionRetriesExhausted = "RetriesExhausted"
	// ConditionEventAgeExceeded: the event waited longer than its
	// function's MaximumEventAge.
	ConditionEventAgeExceeded = "EventAgeExceeded"
)

// Failure is an asynchronous event a function did not process, as Lambda
// sends it to the on-failure destination of the function's asynchronous
// invocation config.
type Failure struct {
	// Function is the function's name.
	Function string
	// RequestID is the event's request ID, the same in every attempt.
	RequestID string
	// Payload is the event, as it was queued.
	Payload []byte
	// Err is the last attempt's error; for ConditionEventAgeExceeded it is
	// nil when the event was never invoked.
	Err error
	// Attempts is how often the function was invoked with the event (the
	// record's approximateInvokeCount).
	Attempts int
	// Condition is ConditionRetriesExhausted or ConditionEventAgeExceeded.
	Condition string
}

// FunctionConfig configures a function of a [LambdaService]. Zero values
// mean Lambda's defaults, except where noted.
type FunctionConfig struct {
	// Concurrency is the function's reserved concurrency: at most this
	// many invocations of it run at once. A synchronous invocation beyond
	// it is refused with TooManyRequestsException (429); an asynchronous
	// event waits in the queue until one of them ends. Default 10.
	Concurrency int
	// Timeout is each invocation's deadline; default 3s, Lambda's.
	Timeout time.Duration
	// MaximumRetryAttempts is how often a failed asynchronous invocation
	// is retried, 0 to 2; nil means Lambda's default, 2.
	MaximumRetryAttempts *int
	// RetryDelays are the waits before the retries of an asynchronous
	// event: RetryDelays[i] before retry i+1, the last one repeating.
	// Default Lambda's, about a minute and then two.
	RetryDelays []time.Duration
	// MaximumEventAge is how long an asynchronous event may wait to be
	// (re)invoked before it is dropped to OnFailure; default 6h, Lambda's.
	MaximumEventAge time.Duration
	// OnFailure, when set, gets the asynchronous events that exhausted
	// their retries or their age, standing in for an on-failure
	// destination. It is called on the service's goroutines, one at a
	// time per function.
	OnFailure func(Failure)
}

// FunctionStats counts a function's invocations.
type FunctionStats struct {
	// Queued is how many asynchronous events wait: for a free slot of
	// the function's concurrency, or for their retry's delay.
	Queued int
	// Running is how many invocations run (a handler that outlived its
	// timeout still holds its slot until it returns).
	Running int
	// Invocations is how many invocations started, retries included.
	Invocations int
	// Succeeded and Errors count the invocations that ended without and
	// with an error (timeouts and crashes included).
	Succeeded, Errors int
	// Retries counts the asynchronous events queued again after an error.
	Retries int
	// Failed counts the asynchronous events dropped to OnFailure.
	Failed int
	// Throttled counts the synchronous invocations refused for lack of
	// concurrency.
	Throttled int
}

// Invocation describes the invocation running a [LambdaHandler]; see
// [InvocationFromContext].
type Invocation struct {
	// Function is the function's name.
	Function string
	// RequestID is the invocation's request ID; an asynchronous event
	// keeps its ID in its retries, as in Lambda.
	RequestID string
	// Attempt counts from 1; retries of an asynchronous event count up.
	Attempt int
	// Async tells an asynchronous (Event) invocation.
	Async bool
}

type invocationKey struct{}

// InvocationFromContext returns the [Invocation] of a handler's ctx.
func InvocationFromContext(ctx context.Context) (Invocation, bool) {
	inv, ok := ctx.Value(invocationKey{}).(Invocation)
	return inv, ok
}

// LambdaServiceConfig configures a [LambdaService].
type LambdaServiceConfig struct {
	// Region and AccountID make the functions' ARNs in error messages;
	// defaults us-east-1 and 000000000000.
	Region, AccountID string
	Logger            zerolog.Logger
}

// LambdaService serves the Lambda Invoke API on this machine, enough of it
// for the AWS SDK's Lambda client pointed at it (AWS_ENDPOINT_URL_LAMBDA):
// POST /2015-03-31/functions/{FunctionName}/invocations with an
// X-Amz-Invocation-Type of RequestResponse (the default: the function runs
// and its result is the response; a function error is reported with
// X-Amz-Function-Error: Unhandled and the error payload), Event (202: the
// event is queued and run asynchronously, with retries, as Lambda does) or
// DryRun (204). It accepts any credentials and verifies no signature.
// Functions are Go handlers registered by name; [RIEPool] runs a bootstrap
// under the Runtime Interface Emulator as one.
type LambdaService struct {
	cfg    LambdaServiceConfig
	base   context.Context // the invocations' parent, canceled by Shutdown when its ctx expires
	cancel context.CancelFunc
	stop   chan struct{} // closed by Shutdown: dispatchers stop

	mu     sync.Mutex
	funcs  map[string]*function
	closed bool
	srvs   []*http.Server

	dispatchers sync.WaitGroup
	running     sync.WaitGroup // invocations and OnFailure calls
}

// function is a registered function and its asynchronous queue.
type function struct {
	name     string
	h        LambdaHandler
	cfg      FunctionConfig
	retries  int
	wake     chan struct{} // capacity 1: something changed, dispatch again
	failures sync.Mutex    // OnFailure calls run one at a time

	// guarded by LambdaService.mu
	queue []*asyncEvent
	stats FunctionStats
}

// asyncEvent is a queued asynchronous invocation.
type asyncEvent struct {
	id        string
	payload   []byte
	queued    time.Time
	notBefore time.Time // the retry's delay ends
	attempts  int
	lastErr   error
}

// NewLambdaService returns a service without functions.
func NewLambdaService(cfg LambdaServiceConfig) *LambdaService {
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.AccountID == "" {
		cfg.AccountID = "000000000000"
	}
	base, cancel := context.WithCancel(context.Background())
	return &LambdaService{cfg: cfg, base: base, cancel: cancel, stop: make(chan struct{}), funcs: map[string]*function{}}
}

// Register adds a function named name. It fails when the name is taken,
// the service is shut down, or cfg is out of Lambda's bounds.
func (s *LambdaService) Register(name string, h LambdaHandler, cfg FunctionConfig) error {
	switch {
	case name == "" || strings.ContainsAny(name, ":/"):
		return fmt.Errorf("awslocal: invalid function name %q", name)
	case h == nil:
		return fmt.Errorf("awslocal: function %s has no handler", name)
	case cfg.MaximumRetryAttempts != nil && (*cfg.MaximumRetryAttempts < 0 || *cfg.MaximumRetryAttempts > 2):
		return fmt.Errorf("awslocal: function %s: MaximumRetryAttempts must be 0 to 2", name)
	case cfg.Concurrency < 0 || cfg.Timeout < 0 || cfg.MaximumEventAge < 0:
		return fmt.Errorf("awslocal: function %s: negative Concurrency, Timeout or MaximumEventAge", name)
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 10
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.MaximumEventAge == 0 {
		cfg.MaximumEventAge = 6 * time.Hour
	}
	if len(cfg.RetryDelays) == 0 {
		cfg.RetryDelays = []time.Duration{time.Minute, 2 * time.Minute}
	}
	f := &function{name: name, h: h, cfg: cfg, retries: 2, wake: make(chan struct{}, 1)}
	if cfg.MaximumRetryAttempts != nil {
		f.retries = *cfg.MaximumRetryAttempts
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("awslocal: the Lambda service is shut down")
	}
	if _, ok := s.funcs[name]; ok {
		return fmt.Errorf("awslocal: function %s is already registered", name)
	}
	s.funcs[name] = f
	s.dispatchers.Go(func() { s.dispatch(f) })
	return nil
}

// Stats returns a function's counters; false when it is not registered.
func (s *LambdaService) Stats(name string) (FunctionStats, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.funcs[name]
	if !ok {
		return FunctionStats{}, false
	}
	st := f.stats
	st.Queued = len(f.queue)
	return st, true
}

// Serve serves the API on l until [LambdaService.Shutdown]; it returns nil
// then.
func (s *LambdaService) Serve(l net.Listener) error {
	srv := local.NewHTTPServer(s, 0)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = l.Close()
		return nil
	}
	s.srvs = append(s.srvs, srv)
	s.mu.Unlock()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("awslocal: Lambda service: %w", err)
	}
	return nil
}

// Shutdown stops serving and dispatching, then waits for the running
// invocations (and OnFailure calls) to end. Events still queued are
// dropped, as they would wait in Lambda's queue. When ctx ends first it
// cancels the invocations' contexts and returns ctx's error without
// waiting further: a handler that ignores its ctx may still run.
func (s *LambdaService) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("awslocal: the Lambda service is already shut down")
	}
	s.closed = true
	close(s.stop)
	srvs := s.srvs
	dropped := 0
	for _, f := range s.funcs {
		dropped += len(f.queue)
	}
	s.mu.Unlock()
	if dropped > 0 {
		s.cfg.Logger.Warn().Int("events", dropped).Msg("awslocal: Lambda service shut down with asynchronous events queued; they are dropped")
	}

	var err error
	for _, srv := range srvs {
		// Waits for the synchronous invocations, whose requests are open.
		if e := srv.Shutdown(ctx); e != nil && err == nil {
			err = e
		}
	}
	done := make(chan struct{})
	go func() {
		s.dispatchers.Wait()
		s.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return err
	case <-ctx.Done():
		s.cancel()
		return ctx.Err()
	}
}

// ServeHTTP implements the Invoke API.
func (s *LambdaService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := uuid.NewString()
	w.Header().Set("X-Amzn-RequestId", reqID)
	const prefix, suffix = "/2015-03-31/functions/", "/invocations"
	path := r.URL.EscapedPath()
	if !strings.HasPrefix(path, prefix) || !strings.HasSuffix(path, suffix) || len(path) <= len(prefix)+len(suffix) {
		apiError(w, http.StatusNotFound, "UnknownOperationException", "message", "Unknown operation "+r.Method+" "+path)
		return
	}
	if r.Method != http.MethodPost {
		apiError(w, http.StatusMethodNotAllowed, "UnknownOperationException", "message", "Unknown operation "+r.Method+" "+path)
		return
	}
	ref, err := url.PathUnescape(path[len(prefix) : len(path)-len(suffix)])
	if err != nil {
		apiError(w, http.StatusBadRequest, "InvalidParameterValueException", "message", "malformed function name: "+err.Error())
		return
	}
	s.mu.Lock()
	closed := s.closed
	f, qualifier := s.lookup(ref)
	s.mu.Unlock()
	if q := r.URL.Query().Get("Qualifier"); q != "" {
		qualifier = q
	}
	switch {
	case closed:
		apiError(w, http.StatusServiceUnavailable, "ServiceException", "Message", "the local Lambda service is shutting down")
		return
	case f == nil || (qualifier != "" && qualifier != "$LATEST"):
		apiError(w, http.StatusNotFound, "ResourceNotFoundException", "Message", "Function not found: "+s.arn(ref, qualifier))
		return
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, maxSyncPayload+1))
	if err != nil {
		apiError(w, http.StatusBadRequest, "InvalidRequestContentException", "message", "reading the request body: "+err.Error())
		return
	}
	typ := r.Header.Get("X-Amz-Invocation-Type")
	limit := maxSyncPayload
	switch typ {
	case "", "RequestResponse", "DryRun":
	case "Event":
		limit = maxAsyncPayload
	default:
		apiError(w, http.StatusBadRequest, "InvalidParameterValueException", "message", "Unsupported invocation type "+typ)
		return
	}
	if len(body) > limit {
		apiError(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", "message",
			fmt.Sprintf("Request must be smaller than %d bytes for the %s invocation type", limit, cmp(typ, "RequestResponse")))
		return
	}
	if len(body) > 0 && !json.Valid(body) {
		apiError(w, http.StatusBadRequest, "InvalidRequestContentException", "message", "Could not parse request body into json")
		return
	}

	switch typ {
	case "DryRun":
		w.WriteHeader(http.StatusNoContent)
	case "Event":
		s.enqueue(f, reqID, body)
		w.WriteHeader(http.StatusAccepted)
	default:
		s.invokeSync(w, f, reqID, body)
	}
}

// cmp returns a, or b when a is empty.
func cmp(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

// lookup resolves a function name, ARN (arn:aws:lambda:region:account:
// function:name[:qualifier]), partial ARN (account:function:name) or
// name:qualifier. s.mu must be held.
func (s *LambdaService) lookup(ref string) (*function, string) {
	name, qualifier := ref, ""
	parts := strings.Split(ref, ":")
	switch {
	case len(parts) >= 7 && parts[0] == "arn":
		name = parts[6]
		if len(parts) > 7 {
			qualifier = parts[7]
		}
	case len(parts) >= 3 && parts[1] == "function":
		name = parts[2]
		if len(parts) > 3 {
			qualifier = parts[3]
		}
	case len(parts) == 2:
		name, qualifier = parts[0], parts[1]
	}
	return s.funcs[name], qualifier
}

func (s *LambdaService) arn(ref, qualifier string) string {
	if strings.HasPrefix(ref, "arn:") {
		return ref
	}
	name, _, _ := strings.Cut(ref, ":")
	arn := fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", s.cfg.Region, s.cfg.AccountID, name)
	if qualifier != "" {
		arn += ":" + qualifier
	}
	return arn
}

// apiError writes an error of the Lambda API as the SDK decodes it: its
// code in X-Amzn-ErrorType, a JSON body with its message (whose member is
// "Message" or "message", depending on the exception).
func apiError(w http.ResponseWriter, status int, code, messageKey, message string) {
	body, _ := json.Marshal(map[string]string{"Type": "User", messageKey: message})
	w.Header().Set("X-Amzn-ErrorType", code)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// invokeSync runs a RequestResponse invocation and writes its result.
func (s *LambdaService) invokeSync(w http.ResponseWriter, f *function, reqID string, payload []byte) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		apiError(w, http.StatusServiceUnavailable, "ServiceException", "Message", "the local Lambda service is shutting down")
		return
	}
	if f.stats.Running >= f.cfg.Concurrency {
		f.stats.Throttled++
		s.mu.Unlock()
		w.Header().Set("Retry-After", "1")
		body, _ := json.Marshal(map[string]string{"Type": "User", "message": "Rate Exceeded.", "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"})
		w.Header().Set("X-Amzn-ErrorType", "TooManyRequestsException")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write(body)
		return
	}
	f.stats.Running++
	f.stats.Invocations++
	s.running.Add(1)
	s.mu.Unlock()
	defer s.running.Done()

	out, returned, err := s.call(f, Invocation{Function: f.name, RequestID: reqID, Attempt: 1}, payload)
	w.Header().Set("X-Amz-Executed-Version", "$LATEST")
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
		out = errorPayload(err)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
	<-returned // the slot is free once the handler returned
	s.finished(f, err)
}

// finished frees an invocation's slot and counts its outcome.
func (s *LambdaService) finished(f *function, err error) {
	s.mu.Lock()
	f.stats.Running--
	if err != nil {
		f.stats.Errors++
	} else {
		f.stats.Succeeded++
	}
	s.mu.Unlock()
	f.notify()
}

func (f *function) notify() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// enqueue queues an asynchronous event.
func (s *LambdaService) enqueue(f *function, reqID string, payload []byte) {
	s.mu.Lock()
	f.queue = append(f.queue, &asyncEvent{id: reqID, payload: payload, queued: time.Now()})
	s.mu.Unlock()
	f.notify()
}

// dispatch starts a function's queued events as its concurrency allows and
// drops those too old, until the service stops.
func (s *LambdaService) dispatch(f *function) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		expired, next := s.startReady(f)
		for _, ev := range expired {
			s.fail(f, ev, ConditionEventAgeExceeded)
		}
		if next > 0 {
			timer.Reset(next)
		}
		select {
		case <-s.stop:
			timer.Stop()
			return
		case <-f.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// startReady starts the events whose retry delay is over, oldest first, as
// long as a slot of the function's concurrency is free, and takes the
// events older than MaximumEventAge out of the queue. It returns those and
// how long until the next event becomes ready or too old (0: none).
func (s *LambdaService) startReady(f *function) ([]*asyncEvent, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var expired []*asyncEvent
	var next time.Duration
	soonest := func(d time.Duration) {
		if d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	kept := f.queue[:0]
	for _, ev := range f.queue {
		age := now.Sub(ev.queued)
		switch {
		case age > f.cfg.MaximumEventAge:
			expired = append(expired, ev)
			continue
		case ev.notBefore.After(now):
			soonest(ev.notBefore.Sub(now))
		case f.stats.Running < f.cfg.Concurrency && !s.closed:
			ev.attempts++
			f.stats.Running++
			f.stats.Invocations++
			s.running.Add(1)
			go s.runAsync(f, ev)
			continue
		}
		soonest(f.cfg.MaximumEventAge - age + time.Millisecond)
		kept = append(kept, ev)
	}
	clear(f.queue[len(kept):])
	f.queue = kept
	return expired, next
}

// runAsync runs one attempt of an asynchronous event and queues its retry
// or drops it to OnFailure when it failed.
func (s *LambdaService) runAsync(f *function, ev *asyncEvent) {
	defer s.running.Done()
	_, returned, err := s.call(f, Invocation{Function: f.name, RequestID: ev.id, Attempt: ev.attempts, Async: true}, ev.payload)
	if err != nil {
		ev.lastErr = err
		s.cfg.Logger.Debug().Err(err).Str("function", f.name).Str("request_id", ev.id).Int("attempt", ev.attempts).
			Msg("awslocal: asynchronous invocation failed")
		if ev.attempts <= f.retries {
			s.mu.Lock()
			ev.notBefore = time.Now().Add(f.cfg.RetryDelays[min(ev.attempts, len(f.cfg.RetryDelays))-1])
			f.queue = append(f.queue, ev)
			f.stats.Retries++
			s.mu.Unlock()
		} else {
			defer s.fail(f, ev, ConditionRetriesExhausted) // once the slot is free
		}
	}
	<-returned
	s.finished(f, err)
}

// fail counts an event that is dropped and hands it to OnFailure.
func (s *LambdaService) fail(f *function, ev *asyncEvent, condition string) {
	s.mu.Lock()
	f.stats.Failed++
	s.mu.Unlock()
	s.cfg.Logger.Warn().Err(ev.lastErr).Str("function", f.name).Str("request_id", ev.id).Int("attempts", ev.attempts).
		Str("condition", condition).Msg("awslocal: asynchronous event dropped to the on-failure destination")
	if f.cfg.OnFailure == nil {
		return
	}
	f.failures.Lock()
	defer f.failures.Unlock()
	f.cfg.OnFailure(Failure{Function: f.name, RequestID: ev.id, Payload: ev.payload, Err: ev.lastErr, Attempts: ev.attempts, Condition: condition})
}

// call runs the handler with the function's timeout. It returns when the
// handler returns or the timeout passes, whichever is first (a timed-out
// invocation fails with Sandbox.Timedout), and a channel closed once the
// handler returned.
func (s *LambdaService) call(f *function, inv Invocation, payload []byte) ([]byte, <-chan struct{}, error) {
	ctx, cancel := context.WithTimeout(s.base, f.cfg.Timeout)
	ctx = context.WithValue(ctx, invocationKey{}, inv)
	type result struct {
		out []byte
		err error
	}
	results := make(chan result, 1)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		defer cancel()
		out, err := runHandler(ctx, f.h, payload, inv.RequestID)
		results <- result{out, err}
	}()
	timedOut := &FunctionError{Type: "Sandbox.Timedout", Message: fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", inv.RequestID, f.cfg.Timeout.Seconds())}
	outcome := func(r result) ([]byte, <-chan struct{}, error) {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, returned, timedOut
		}
		if r.err == nil && len(r.out) > maxSyncPayload {
			r.err = &FunctionError{Type: "Function.ResponseSizeTooLarge", Message: fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", maxSyncPayload)}
		}
		return r.out, returned, r.err
	}
	select {
	case r := <-results:
		return outcome(r)
	case <-ctx.Done():
		select {
		case r := <-results: // it returned, then its ctx was released
			return outcome(r)
		default:
		}
		if s.base.Err() != nil {
			return nil, returned, &FunctionError{Type: "Runtime.ExitError", Message: fmt.Sprintf("RequestId: %s Error: the local Lambda service shut down", inv.RequestID)}
		}
		return nil, returned, timedOut
	}
}

// runHandler calls h, turning a panic into a runtime crash.
func runHandler(ctx context.Context, h LambdaHandler, payload []byte, reqID string) (out []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, &FunctionError{Type: "Runtime.ExitError", Message: fmt.Sprintf("RequestId: %s Error: Runtime exited with error: panic: %v", reqID, v)}
		}
	}()
	return h(ctx, payload)
}

// errorPayload is the error document a Lambda runtime reports.
func errorPayload(err error) []byte {
	doc := struct {
		Message string `json:"errorMessage"`
		Type    string `json:"errorType"`
	}{Message: err.Error()}
	var fe *FunctionError
	if errors.As(err, &fe) {
		doc.Message, doc.Type = fe.Message, fe.Type
	} else {
		t := reflect.TypeOf(err)
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		doc.Type = t.Name()
	}
	b, _ := json.Marshal(doc)
	return b
}
