package main_test

// End-to-end tests of the real `streamer dev` binary: TestMain builds it
// once, and the tests start it as a child process, talk to it over
// WebSocket (with the Go client and with raw frames) and check every rule of
// docs/protocol.md that the demo and report plugins can exercise.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
	"github.com/streamer-go/streamer/middleware"
)

// testSecret is the STREAMER_JWT_SECRET of every server the tests start.
const testSecret = "e2e-test-secret-0123456789abcdef-0123456789"

// Deadlines of the helpers. They bound waits for conditions; nothing sleeps.
const (
	startTimeout = 20 * time.Second
	stopTimeout  = 10 * time.Second
	readTimeout  = 10 * time.Second
)

// binPath is the streamer binary TestMain builds.
var binPath string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "streamer-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: temp dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "streamer")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building streamer: %v\n", err)
		return 1
	}
	code := m.Run()
	stopShared()
	return code
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// From returns what was written from offset on.
func (b *syncBuffer) From(offset int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if offset > len(s) {
		return ""
	}
	return s[offset:]
}

// runtimeFlags selects the runtime the suite runs against: the embedded one
// by default, or with STREAMER_E2E_RUNTIME=aws-local the AWS path (the
// Lambda handlers on DynamoDB Local, whose endpoint comes from
// AWS_ENDPOINT_URL_DYNAMODB). Each data dir gets a table of its own, kept
// across a restart on the same dir.
func runtimeFlags(dataDir string) []string {
	if os.Getenv("STREAMER_E2E_RUNTIME") != "aws-local" {
		return nil
	}
	sum := sha256.Sum256([]byte(dataDir))
	return []string{"--aws-local", "--table", "e2e-" + hex.EncodeToString(sum[:8])}
}

// faultThrottle is the fraction of DynamoDB calls the aws-local servers
// throttle (STREAMER_E2E_DYNAMODB_THROTTLE, such as 0.2; scripts/test.sh
// sets it), or "" for none.
func faultThrottle() string {
	if os.Getenv("STREAMER_E2E_RUNTIME") != "aws-local" {
		return ""
	}
	f := os.Getenv("STREAMER_E2E_DYNAMODB_THROTTLE")
	if v, err := strconv.ParseFloat(f, 64); err != nil || v <= 0 {
		return ""
	}
	return f
}

// faultEnv is the fault injection environment of the servers: with
// faultThrottle set, each throttles that fraction of its DynamoDB calls,
// with a fixed seed.
func faultEnv() []string {
	f := faultThrottle()
	if f == "" {
		return nil
	}
	return []string{"STREAMER_FAULT_DYNAMODB_THROTTLE=" + f, "STREAMER_FAULT_SEED=20"}
}

// devServer is one `streamer dev` child process.
type devServer struct {
	cmd     *exec.Cmd
	dataDir string
	extra   []string // more flags of dev
	addr    string   // host:port
	wsURL   string
	httpURL string
	stdout  *syncBuffer
	stderr  *syncBuffer

	exited   chan struct{} // closed once Wait returned
	readDone chan struct{} // closed once stdout was read to its end
	waitErr  error         // valid after exited
}

// launchDev starts `streamer dev` on addr with dataDir and the extra flags,
// and returns once it printed its WebSocket URL. It does not register any
// cleanup.
func launchDev(addr, dataDir string, extra ...string) (*devServer, error) {
	s := &devServer{
		dataDir:  dataDir,
		extra:    extra,
		stdout:   &syncBuffer{},
		stderr:   &syncBuffer{},
		exited:   make(chan struct{}),
		readDone: make(chan struct{}),
	}
	extra = append(extra, runtimeFlags(dataDir)...)
	s.cmd = exec.Command(binPath, append([]string{"dev", "--addr", addr, "--data-dir", dataDir}, extra...)...)
	s.cmd.Dir = dataDir
	s.cmd.Env = devEnv(append([]string{"STREAMER_JWT_SECRET=" + testSecret}, faultEnv()...)...)
	s.cmd.Stderr = s.stderr
	pr, pw := io.Pipe()
	s.cmd.Stdout = pw
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("e2e: start streamer dev: %w", err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		_ = pw.Close()
		close(s.exited)
	}()
	urls := make(chan string, 1)
	go func() {
		defer close(s.readDone)
		sc := bufio.NewScanner(pr)
		found := false
		for sc.Scan() {
			line := sc.Text()
			_, _ = s.stdout.Write([]byte(line + "\n"))
			if u, ok := strings.CutPrefix(line, "  websocket:  "); ok && !found {
				found = true
				urls <- strings.TrimSpace(u)
			}
		}
		// Keep draining whatever is left so the copy into pw never blocks.
		_, _ = io.Copy(io.Discard, pr)
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case u := <-urls:
		s.wsURL = u
		pu, err := url.Parse(u)
		if err != nil {
			s.kill()
			return nil, fmt.Errorf("e2e: websocket URL %q: %w", u, err)
		}
		s.addr = pu.Host
		s.httpURL = "http://" + pu.Host
		return s, nil
	case <-s.exited:
		<-s.readDone
		return nil, fmt.Errorf("e2e: streamer dev exited before serving (%w); stderr:\n%s", s.waitErr, s.stderr.From(0))
	case <-timer.C:
		s.kill()
		return nil, fmt.Errorf("e2e: streamer dev printed no websocket URL within %s; stdout:\n%s\nstderr:\n%s",
			startTimeout, s.stdout.From(0), s.stderr.From(0))
	}
}

// devEnv returns the environment without any STREAMER_ variable, plus extra.
func devEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STREAMER_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// startDev starts a server of its own for t, on a fresh data dir and with
// the extra flags, stopped when t ends; on failure t's log gets its stderr.
func startDev(t *testing.T, extra ...string) *devServer {
	t.Helper()
	s, err := launchDev("127.0.0.1:0", t.TempDir(), extra...)
	require.NoError(t, err)
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("streamer dev stderr:\n%s", s.stderr.From(0))
		}
	})
	return s
}

// restart starts a server on the same address and data dir as s, which must
// have exited, stopped when t ends.
func (s *devServer) restart(t *testing.T) *devServer {
	t.Helper()
	// The port was freed when s died; another process could take it in
	// the meantime, so retry the bind a few times with a deadline.
	var (
		ns  *devServer
		err error
	)
	deadline := time.Now().Add(startTimeout)
	for {
		ns, err = launchDev(s.addr, s.dataDir, s.extra...)
		if err == nil || time.Now().After(deadline) || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	require.NoError(t, err)
	t.Cleanup(func() {
		ns.stop()
		if t.Failed() {
			t.Logf("restarted streamer dev stderr:\n%s", ns.stderr.From(0))
		}
	})
	return ns
}

// stop ends the server: SIGTERM, then SIGKILL after stopTimeout. It waits
// for the process and its output reader.
func (s *devServer) stop() {
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(stopTimeout)
		select {
		case <-s.exited:
		case <-timer.C:
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		timer.Stop()
	}
	<-s.readDone
}

// kill ends the server with SIGKILL, as a crash would, and waits for it.
func (s *devServer) kill() {
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	<-s.readDone
}

// The shared server serves the tests whose state cannot interfere (they use
// unique request ids and principals). It starts on first use.
var (
	sharedOnce sync.Once
	sharedSrv  *devServer
	sharedErr  error
)

// shared returns the shared server; on failure t's log gets the stderr it
// printed while t ran.
func shared(t *testing.T) *devServer {
	t.Helper()
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "streamer-e2e-shared-")
		if err != nil {
			sharedErr = err
			return
		}
		sharedSrv, sharedErr = launchDev("127.0.0.1:0", dir)
		if sharedErr != nil {
			_ = os.RemoveAll(dir)
		}
	})
	require.NoError(t, sharedErr)
	offset := sharedSrv.stderr.Len()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shared streamer dev stderr during the test:\n%s", sharedSrv.stderr.From(offset))
		}
	})
	return sharedSrv
}

func stopShared() {
	if sharedSrv != nil {
		sharedSrv.stop()
		_ = os.RemoveAll(sharedSrv.dataDir)
	}
}

// idSeq makes request ids and subjects unique within the test binary.
var idSeq atomic.Int64

// uid returns a unique name with prefix, valid as a request id or subject.
func uid(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), idSeq.Add(1))
}

// token mints a valid token for sub (and tenant, when not empty).
func token(t *testing.T, sub, tenant string) string {
	t.Helper()
	tok, err := middleware.SignHS256([]byte(testSecret), middleware.Claims{Subject: sub, Tenant: tenant, TTL: time.Hour})
	require.NoError(t, err)
	return tok
}

// rawConn is a WebSocket connection driven with hand-made frames.
type rawConn struct {
	t *testing.T
	c *websocket.Conn
	// pending are messages read ahead (by waitStatus) that the next reads
	// return first, in order.
	pending []streamer.Message
}

// dialWS performs a handshake with the given header (may be nil) and query
// parameters (may be nil).
func dialWS(ctx context.Context, wsURL string, header http.Header, query url.Values) (*websocket.Conn, *http.Response, error) {
	u := wsURL
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: header})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	return c, resp, err
}

// dialRaw connects with tok as a bearer header; it fails t on error.
func dialRaw(t *testing.T, s *devServer, tok string) *rawConn {
	t.Helper()
	return dialRawWith(t, s, http.Header{"Authorization": {"Bearer " + tok}}, nil)
}

// dialRawWith connects with header and query; it fails t on error. The
// connection is closed when t ends.
func dialRawWith(t *testing.T, s *devServer, header http.Header, query url.Values) *rawConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	c, resp, err := dialWS(ctx, s.wsURL, header, query)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		require.NoError(t, err, "dial (HTTP %d)", status)
	}
	// Read more than the protocol's limit, so that an oversized server
	// message is seen and reported rather than failing the read.
	c.SetReadLimit(8 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return &rawConn{t: t, c: c}
}

// sendText writes s as one text frame.
func (r *rawConn) sendText(s string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	require.NoError(r.t, r.c.Write(ctx, websocket.MessageText, []byte(s)))
}

// send encodes v as JSON and writes it as one text frame.
func (r *rawConn) send(v any) {
	r.t.Helper()
	b, err := json.Marshal(v)
	require.NoError(r.t, err)
	r.sendText(string(b))
}

// request sends a frame with action, id and payload (any JSON value; nil
// for none).
func (r *rawConn) request(action, id string, payload any) {
	r.t.Helper()
	f := map[string]any{"action": action}
	if id != "" {
		f["id"] = id
	}
	if payload != nil {
		f["payload"] = payload
	}
	r.send(f)
}

// readRaw reads one message with the read deadline.
func (r *rawConn) readRaw() (websocket.MessageType, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	return r.c.Read(ctx)
}

// read reads one server message, checks the protocol's size and type
// rules, and decodes it.
func (r *rawConn) read() streamer.Message {
	r.t.Helper()
	if len(r.pending) > 0 {
		m := r.pending[0]
		r.pending = r.pending[1:]
		return m
	}
	m, _ := r.readSized()
	return m
}

// readSized is read that also returns the message's size on the wire.
func (r *rawConn) readSized() (streamer.Message, int) {
	r.t.Helper()
	typ, data, err := r.readRaw()
	require.NoError(r.t, err, "reading a server message")
	require.Equal(r.t, websocket.MessageText, typ, "server messages are text frames")
	require.LessOrEqual(r.t, len(data), streamer.MaxMessageSize, "a server message exceeds 128 KiB")
	var m streamer.Message
	require.NoError(r.t, json.Unmarshal(data, &m), "server message %s", data)
	require.NotEmpty(r.t, m.Type, "server message without type: %s", data)
	if m.Error != nil {
		// No case of the suite provokes one: with storage throttled
		// (faultThrottle) the SDK retries, and what still fails is
		// answered UNAVAILABLE.
		require.NotEqual(r.t, streamer.CodeInternal, m.Error.Code, "server message %s", data)
	}
	return m, len(data)
}

// readFor reads until a message about requestID arrives and returns it;
// messages about other requests fail the test.
func (r *rawConn) readFor(requestID string) streamer.Message {
	r.t.Helper()
	m := r.read()
	require.Equal(r.t, requestID, m.RequestID, "unexpected message %+v", m)
	return m
}

// expectError reads the next message and checks it is an error message
// (no seq) with code and requestID.
func (r *rawConn) expectError(code, requestID string) streamer.Message {
	r.t.Helper()
	m := r.read()
	require.Equal(r.t, streamer.TypeError, m.Type, "want an error %s, got %+v", code, m)
	require.NotNil(r.t, m.Error, "error message without error body")
	require.Equal(r.t, code, m.Error.Code, "error %+v", m.Error)
	require.Equal(r.t, requestID, m.RequestID)
	require.Zero(r.t, m.Seq, "a refusal carries no seq")
	require.NotZero(r.t, m.Timestamp, "error without timestamp")
	return m
}

// untilTerminal reads messages about requestID until its terminal event
// and returns them all, the terminal one last. Messages about other
// requests fail the test.
func (r *rawConn) untilTerminal(requestID string) []streamer.Message {
	r.t.Helper()
	var out []streamer.Message
	for {
		m := r.readFor(requestID)
		out = append(out, m)
		if m.Terminal() {
			return out
		}
	}
}

// status asks for the status of id and returns the reply (a status or an
// error message).
func (r *rawConn) status(id string) streamer.Message {
	r.t.Helper()
	r.request(streamer.ActionStatus, "", map[string]any{"request_id": id})
	return r.readFor(id)
}

// ping sends a ping and reads up to its pong; it returns the messages read
// before the pong.
func (r *rawConn) ping() []streamer.Message {
	r.t.Helper()
	r.request(streamer.ActionPing, "", nil)
	var before []streamer.Message
	for {
		m := r.read()
		if m.Type == streamer.TypePong {
			return before
		}
		before = append(before, m)
	}
}

// ack sends an async request and reads its acknowledgment.
func (r *rawConn) ack(action, id string, payload any) streamer.Message {
	r.t.Helper()
	r.request(action, id, payload)
	m := r.readFor(id)
	require.Equal(r.t, streamer.TypeAcknowledgment, m.Type, "want an acknowledgment, got %+v (error %+v)", m, m.Error)
	return m
}

// dialClient connects the Go client with tok, closed when t ends.
func dialClient(t *testing.T, s *devServer, tok string, opts ...func(*client.Options)) *client.Client {
	t.Helper()
	o := client.Options{Token: tok, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	c, err := client.Dial(ctx, s.wsURL, o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testCtx returns a context ending after d, canceled when t ends.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// checkStream checks an async request's events: seqs contiguous from
// first, exactly one terminal and it is last, percentages within 0-100 and
// never decreasing, and returns the progress events.
func checkStream(t *testing.T, events []streamer.Message, first int64) []streamer.Message {
	t.Helper()
	require.NotEmpty(t, events)
	var progress []streamer.Message
	last := -1.0
	if first == 1 {
		require.Equal(t, streamer.TypeStarted, events[0].Type, "a stream opens with the run's started event")
		require.Equal(t, 1, events[0].Attempt)
	}
	for i, m := range events {
		require.Equal(t, first+int64(i), m.Seq, "event %d (%s) has seq %d: the seqs must be contiguous", i, m.Type, m.Seq)
		require.Equal(t, i == len(events)-1, m.Terminal(), "event %d (%s): exactly one terminal event, the last", i, m.Type)
		if m.Type == streamer.TypeProgress {
			require.GreaterOrEqual(t, m.Percentage, last, "percentage decreased at seq %d", m.Seq)
			require.GreaterOrEqual(t, m.Percentage, 0.0)
			require.LessOrEqual(t, m.Percentage, 100.0)
			require.NotZero(t, m.Timestamp, "progress without timestamp")
			last = m.Percentage
			progress = append(progress, m)
		}
	}
	return progress
}
