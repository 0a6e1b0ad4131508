//go:build unix

package awslocal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
)

// RIEConfig configures an [RIEPool].
type RIEConfig struct {
	// RIE is the aws-lambda-rie binary (the go tool
	// github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie).
	RIE string
	// Bootstrap is the function's bootstrap binary.
	Bootstrap string
	// Env is the emulators' environment, which they pass on to the
	// bootstrap; nil means this process's. AWS_LAMBDA_FUNCTION_NAME and
	// AWS_LAMBDA_FUNCTION_TIMEOUT are added unless Env sets them.
	Env []string
	// FunctionName is AWS_LAMBDA_FUNCTION_NAME; default the invoked
	// function's name.
	FunctionName string
	// Timeout sets AWS_LAMBDA_FUNCTION_TIMEOUT (whole seconds, rounded
	// up), the deadline the bootstrap sees; default the deadline of the
	// invocation that starts the emulator, which a [LambdaService] sets to
	// the function's Timeout. Either way an emulator whose invocation
	// outlives its ctx is killed.
	Timeout time.Duration
	// OnStart, when set, is called as an invocation is handed to an
	// emulator, before its request is sent.
	OnStart func(RIEInvocation)
	// Output gets the emulators' (and bootstraps') standard output and
	// error; nil discards them.
	Output io.Writer
	// StartTimeout bounds an emulator's start; default 30s.
	StartTimeout time.Duration
}

// RIEInvocation is an invocation running in an emulator of an [RIEPool].
type RIEInvocation struct {
	// RequestID is the invocation's request ID, which the emulator hands
	// to the bootstrap as its AWS request ID.
	RequestID string
	// Attempt is the invocation's attempt (see [Invocation]).
	Attempt int
	// PID is the emulator's process, which leads a session with the
	// bootstrap it runs. Killing it crashes the invocation: the pool
	// kills the bootstrap and starts another emulator for the next one.
	PID int
}

// RIEPool runs a function's bootstrap under the Lambda Runtime Interface
// Emulator, one emulator process per concurrently running invocation, as
// Lambda runs one execution environment per concurrent invocation. Its
// Invoke method is a [LambdaHandler]: the service's Concurrency bounds the
// pool. An emulator is reused after an invocation that returned a result
// or a function error, and killed (with its bootstrap) after one that
// crashed, timed out or was canceled; the next invocation starts a fresh
// one, with a cold start, as Lambda resets an execution environment.
type RIEPool struct {
	cfg RIEConfig

	mu      sync.Mutex
	idle    []*emulator
	all     map[*emulator]struct{}
	running map[string]*emulator // by request ID
	closed  bool
	wg      sync.WaitGroup // the emulators' waiters
}

// emulator is one aws-lambda-rie process.
type emulator struct {
	cmd    *exec.Cmd
	url    string
	exited chan struct{} // closed once the process was reaped
	status string        // its exit status, set before exited is closed
}

// NewRIEPool checks that the binaries exist; it starts no emulator yet.
func NewRIEPool(cfg RIEConfig) (*RIEPool, error) {
	for what, path := range map[string]string{"RIE": cfg.RIE, "Bootstrap": cfg.Bootstrap} {
		if path == "" {
			return nil, fmt.Errorf("awslocal: RIEConfig.%s is required", what)
		}
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("awslocal: RIEConfig.%s: %w", what, err)
		}
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	return &RIEPool{cfg: cfg, all: map[*emulator]struct{}{}, running: map[string]*emulator{}}, nil
}

// PID returns the emulator process running the invocation with a request
// ID, while it runs.
func (p *RIEPool) PID(requestID string) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.running[requestID]
	if !ok {
		return 0, false
	}
	return e.cmd.Process.Pid, true
}

// Emulators returns how many emulator processes are alive (idle or
// running an invocation).
func (p *RIEPool) Emulators() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.all)
}

// Invoke runs one invocation in an idle emulator, or a new one. A function
// error comes back as a [*FunctionError] with the runtime's errorType; a
// crash of the emulator or the bootstrap as a Runtime.ExitError.
func (p *RIEPool) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	inv, ok := InvocationFromContext(ctx)
	if !ok {
		inv = Invocation{RequestID: uuid.NewString(), Attempt: 1}
	}
	e, err := p.take(ctx, inv)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.running[inv.RequestID] = e
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.running, inv.RequestID)
		p.mu.Unlock()
	}()
	if p.cfg.OnStart != nil {
		p.cfg.OnStart(RIEInvocation{RequestID: inv.RequestID, Attempt: inv.Attempt, PID: e.cmd.Process.Pid})
	}

	out, status, err := e.post(ctx, inv.RequestID, payload)
	switch {
	case err != nil:
		p.discard(e)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The emulator died: report how, as Lambda reports a runtime
		// that exited during an invocation.
		select {
		case <-e.exited:
		case <-time.After(time.Second):
		}
		return nil, &FunctionError{Type: "Runtime.ExitError", Message: fmt.Sprintf("RequestId: %s Error: Runtime exited with error: %s", inv.RequestID, e.exitStatus(err))}
	case status != http.StatusOK:
		// The bootstrap crashed (502) or the emulator failed.
		p.discard(e)
		if fe := parseErrorDoc(out); fe != nil {
			return nil, fe
		}
		return nil, &FunctionError{Type: "Runtime.ExitError", Message: fmt.Sprintf("RequestId: %s Error: the emulator answered %d: %s", inv.RequestID, status, out)}
	}
	p.release(e)
	// The emulator answers a function error with 200 and the runtime's
	// error document, without Lambda's X-Amz-Function-Error header.
	if fe := parseErrorDoc(out); fe != nil {
		return nil, fe
	}
	return out, nil
}

// parseErrorDoc returns the error of a runtime's error document: a JSON
// object with an errorType and nothing but errorMessage and stackTrace
// besides; nil for anything else.
func parseErrorDoc(b []byte) *FunctionError {
	var doc map[string]json.RawMessage
	if json.Unmarshal(b, &doc) != nil {
		return nil //nolint:nilerr // not a JSON object: not an error document
	}
	var fe FunctionError
	if json.Unmarshal(doc["errorType"], &fe.Type) != nil || fe.Type == "" {
		return nil //nolint:nilerr // no string errorType: not an error document
	}
	for k := range doc {
		if k != "errorType" && k != "errorMessage" && k != "stackTrace" {
			return nil
		}
	}
	if m, ok := doc["errorMessage"]; ok {
		_ = json.Unmarshal(m, &fe.Message)
	}
	return &fe
}

// take returns an idle emulator, or starts one.
func (p *RIEPool) take(ctx context.Context, inv Invocation) (*emulator, error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		e := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		select {
		case <-e.exited:
			continue // died while idle
		default:
		}
		p.mu.Unlock()
		return e, nil
	}
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, errors.New("awslocal: the RIE pool is closed")
	}
	var err error
	for range 3 { // a port taken between its pick and the emulator's bind
		var e *emulator
		if e, err = p.start(ctx, inv); err == nil {
			return e, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

// start runs an emulator and waits until it accepts connections.
func (p *RIEPool) start(ctx context.Context, inv Invocation) (*emulator, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	apiAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	env := p.cfg.Env
	if env == nil {
		env = os.Environ()
	}
	env = append([]string(nil), env...)
	if !hasEnv(env, "AWS_LAMBDA_FUNCTION_NAME") {
		name := p.cfg.FunctionName
		if name == "" {
			name = inv.Function
		}
		if name != "" {
			env = append(env, "AWS_LAMBDA_FUNCTION_NAME="+name)
		}
	}
	if !hasEnv(env, "AWS_LAMBDA_FUNCTION_TIMEOUT") {
		timeout := p.cfg.Timeout
		if d, ok := ctx.Deadline(); ok && timeout == 0 {
			timeout = time.Until(d)
		}
		if timeout > 0 {
			env = append(env, "AWS_LAMBDA_FUNCTION_TIMEOUT="+strconv.Itoa(int(math.Ceil(timeout.Seconds()))))
		}
	}
	// The emulator outlives the invocation that starts it; the pool ends it.
	cmd := exec.CommandContext(context.WithoutCancel(ctx), p.cfg.RIE, "--runtime-interface-emulator-address", addr, "--runtime-api-address", apiAddr, p.cfg.Bootstrap) //nolint:gosec // the configured binaries
	cmd.Env = env
	out := p.cfg.Output
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own session, which the bootstrap it starts inherits (the
	// emulator puts it in a process group of its own), so that the pool
	// finds and kills the bootstrap with the emulator.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("awslocal: the RIE pool is closed")
	}
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return nil, fmt.Errorf("awslocal: starting the RIE: %w", err)
	}
	e := &emulator{cmd: cmd, url: "http://" + addr + "/2015-03-31/functions/function/invocations", exited: make(chan struct{})}
	p.all[e] = struct{}{}
	p.wg.Go(func() {
		err := cmd.Wait()
		killSession(cmd.Process.Pid) // the bootstrap, when the emulator alone was killed
		e.status = "exit status 0"
		if err != nil {
			e.status = err.Error()
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				e.status = exit.String() // "signal: killed"
			}
		}
		close(e.exited)
		p.mu.Lock()
		delete(p.all, e)
		p.mu.Unlock()
	})
	p.mu.Unlock()

	deadline := time.NewTimer(p.cfg.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = c.Close()
			return e, nil
		}
		select {
		case <-e.exited:
			return nil, fmt.Errorf("awslocal: the RIE exited at start: %s", e.status)
		case <-ctx.Done():
			p.discard(e)
			return nil, ctx.Err()
		case <-deadline.C:
			p.discard(e)
			return nil, fmt.Errorf("awslocal: the RIE did not listen on %s within %v", addr, p.cfg.StartTimeout)
		case <-tick.C:
		}
	}
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if len(kv) > len(key) && kv[:len(key)] == key && kv[len(key)] == '=' {
			return true
		}
	}
	return false
}

// freeLoopbackAddr returns a loopback address free right now.
func freeLoopbackAddr() (string, error) {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// post sends one invocation to the emulator.
func (e *emulator) post(ctx context.Context, requestID string, payload []byte) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(payload))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("X-Amzn-RequestId", requestID)
	// A connection of its own: a killed emulator's pooled connection
	// would fail the next request of another one.
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, 0, err
	}
	return out, resp.StatusCode, nil
}

// exitStatus describes how the emulator ended, or err when it did not yet.
func (e *emulator) exitStatus(err error) string {
	select {
	case <-e.exited:
		return e.status
	default:
		return err.Error()
	}
}

// release returns an emulator to the idle ones, unless the pool closed.
func (p *RIEPool) release(e *emulator) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.discard(e)
		return
	}
	p.idle = append(p.idle, e)
}

// discard kills an emulator and its bootstrap.
func (p *RIEPool) discard(e *emulator) {
	select {
	case <-e.exited: // reaped, and its session killed
	default:
		killSession(e.cmd.Process.Pid)
	}
}

// Close kills every emulator, with its bootstrap, and waits until they
// are reaped. Invocations still running fail as crashed: shut the
// [LambdaService] down first.
func (p *RIEPool) Close() error {
	p.mu.Lock()
	p.closed = true
	for e := range p.all {
		p.discard(e)
	}
	p.idle = nil
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}
