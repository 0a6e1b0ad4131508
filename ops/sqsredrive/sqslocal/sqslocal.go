// Package sqslocal runs an SQS-compatible server in this process, on
// 127.0.0.1, for tests: goaws (github.com/Admiral-Piett/goaws), which
// speaks SQS's Query protocol, as [sqsredrive.Queue] does. It checks no
// signature.
//
// goaws keeps its queues in package-level state, so one [Server] runs in a
// process at a time ([New] fails while another is open), and its handlers
// are run one at a time. A received message becomes visible again once
// its queue's visibility timeout has passed, checked every 100 ms, as on
// SQS.
//
// [sqsredrive.Queue]: https://pkg.go.dev/github.com/streamer-go/streamer/ops/sqsredrive#Queue
package sqslocal

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Admiral-Piett/goaws/app"
	"github.com/Admiral-Piett/goaws/app/gosqs"
	"github.com/Admiral-Piett/goaws/app/router"
	"github.com/sirupsen/logrus"
)

// AccountID is the account in the queue URLs the server gives.
const AccountID = "000000000000"

// DefaultVisibilityTimeout is a queue's visibility timeout when
// [Server.CreateQueue] is given none: SQS's default.
const DefaultVisibilityTimeout = 30 * time.Second

var (
	openMu sync.Mutex
	open   bool
)

// Server is a running SQS-compatible server. Close it.
type Server struct {
	ln    net.Listener
	srv   *http.Server
	quit  chan struct{}
	done  sync.WaitGroup
	close sync.Once
	url   string
}

// New starts a server on a free port of 127.0.0.1, with no queue. It
// fails while another Server of this process is open.
func New(ctx context.Context) (*Server, error) {
	openMu.Lock()
	defer openMu.Unlock()
	if open {
		return nil, errors.New("sqslocal: a server is already open in this process (goaws keeps its state in package variables)")
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sqslocal: %w", err)
	}
	// goaws logs every call at info level.
	logrus.SetLevel(logrus.WarnLevel)
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	app.SyncQueues.Lock()
	app.CurrentEnvironment = app.Environment{Host: host, Port: port, AccountID: AccountID}
	app.CurrentEnvironment.QueueAttributeDefaults.VisibilityTimeout = int(DefaultVisibilityTimeout / time.Second)
	app.SyncQueues.Queues = make(map[string]*app.Queue)
	app.SyncQueues.Unlock()

	var serial sync.Mutex // goaws's handlers read its queues without locking
	h := router.New()
	s := &Server{ln: ln, quit: make(chan struct{}), url: "http://" + ln.Addr().String()}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			serial.Lock()
			defer serial.Unlock()
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	s.done.Add(2)
	go func() {
		defer s.done.Done()
		_ = s.srv.Serve(ln)
	}()
	go func() {
		defer s.done.Done()
		gosqs.PeriodicTasks(100*time.Millisecond, s.quit)
	}()
	open = true
	return s, nil
}

// URL is the server's base URL, http://127.0.0.1:PORT: the endpoint of an
// SQS client (AWS_ENDPOINT_URL_SQS).
func (s *Server) URL() string { return s.url }

// CreateQueue creates the queue name with that visibility timeout (whole
// seconds; zero: [DefaultVisibilityTimeout]) and returns its URL,
// http://127.0.0.1:PORT/000000000000/NAME.
func (s *Server) CreateQueue(ctx context.Context, name string, visibility time.Duration) (string, error) {
	if visibility == 0 {
		visibility = DefaultVisibilityTimeout
	}
	form := url.Values{
		"Action": {"CreateQueue"}, "QueueName": {name},
		"Attribute.1.Name": {"VisibilityTimeout"}, "Attribute.1.Value": {strconv.Itoa(int(visibility / time.Second))},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("sqslocal: create queue %s: %w", name, err)
	}
	defer resp.Body.Close() //nolint:errcheck // read below
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("sqslocal: create queue %s: %w", name, err)
	}
	var out struct {
		URL string `xml:"CreateQueueResult>QueueUrl"`
	}
	if resp.StatusCode != http.StatusOK || xml.Unmarshal(body, &out) != nil || out.URL == "" {
		return "", fmt.Errorf("sqslocal: create queue %s: HTTP %d: %s", name, resp.StatusCode, body)
	}
	return out.URL, nil
}

// Close stops the server and waits for its goroutines; the queues are
// gone. Closing twice is harmless.
func (s *Server) Close() error {
	var err error
	s.close.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = s.srv.Shutdown(ctx)
		close(s.quit)
		s.done.Wait()
		openMu.Lock()
		open = false
		openMu.Unlock()
	})
	return err
}
