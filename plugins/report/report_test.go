package report_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/blob"
	"github.com/streamer-go/streamer/blob/localblob"
	"github.com/streamer-go/streamer/blob/s3blob"
	"github.com/streamer-go/streamer/blob/s3blob/s3local"
	"github.com/streamer-go/streamer/plugins/report"
)

// recorder is a Reporter that keeps every update.
type recorder struct {
	mu      sync.Mutex
	updates []streamer.Update
}

func (r *recorder) Report(_ context.Context, u streamer.Update) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates = append(r.updates, u)
	return nil
}

func (r *recorder) all() []streamer.Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]streamer.Update(nil), r.updates...)
}

// keysStore is a blob.Store that records the keys stored.
type keysStore struct {
	blob.Store
	mu   sync.Mutex
	keys []string
}

func (k *keysStore) Put(ctx context.Context, key string, body io.Reader, opts blob.PutOptions) error {
	if err := k.Store.Put(ctx, key, body, opts); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys = append(k.keys, key)
	return nil
}

func (k *keysStore) stored() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.keys...)
}

type testBundle struct {
	store   *keysStore
	baseURL string
	handler streamer.Handler
	server  *httptest.Server
}

// setup serves a fresh local blob store at <server>/blobs/ and builds the
// plugin with cfg (Store filled in).
func setup(t *testing.T, cfg report.Config) *testBundle {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	st, err := localblob.New(localblob.Config{Dir: filepath.Join(t.TempDir(), "blobs"), BaseURL: srv.URL + "/blobs/"})
	require.NoError(t, err)
	mux.Handle("/blobs/", http.StripPrefix("/blobs", st))
	return build(t, cfg, st, srv, srv.URL+"/blobs/")
}

// setupS3 does as setup with an S3 bucket on a local S3 server.
func setupS3(t *testing.T, cfg report.Config) *testBundle {
	t.Helper()
	fake, err := s3local.New(s3local.Config{Buckets: []string{"reports-bucket"}})
	require.NoError(t, err)
	srv := httptest.NewServer(fake) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	st, err := s3blob.New(s3blob.Config{
		AWS: aws.Config{
			Region:       "us-east-1",
			Credentials:  credentials.NewStaticCredentialsProvider(s3local.DefaultAccessKeyID, s3local.DefaultSecretAccessKey, ""),
			BaseEndpoint: aws.String(srv.URL),
		},
		Bucket: "reports-bucket", PathStyle: true,
	})
	require.NoError(t, err)
	return build(t, cfg, st, srv, srv.URL+"/reports-bucket/")
}

func build(t *testing.T, cfg report.Config, st blob.Store, srv *httptest.Server, baseURL string) *testBundle {
	t.Helper()
	ks := &keysStore{Store: st}
	cfg.Store = ks
	p, err := report.New(cfg)
	require.NoError(t, err)
	require.Equal(t, "report", p.Name)
	require.Len(t, p.Actions, 1)
	a := p.Actions[0]
	require.Equal(t, "generate_report", a.Name)
	require.Equal(t, streamer.ModeAsync, a.Options.Mode)
	return &testBundle{store: ks, baseURL: baseURL, handler: a.Handler, server: srv}
}

// run validates and serves a request for payload, as the framework would.
func (b *testBundle) run(ctx context.Context, t *testing.T, id, payload string, rep streamer.Reporter) (report.Result, error) {
	t.Helper()
	req := &streamer.Request{ID: id, Action: "generate_report", Payload: json.RawMessage(payload), Stage: streamer.StageProcess, Attempt: 1}
	ctx = streamer.WithRequest(ctx, req)
	if err := b.handler.(streamer.Validator).Validate(ctx, req); err != nil {
		return report.Result{}, err
	}
	out, err := b.handler.Serve(ctx, req, rep)
	if err != nil {
		return report.Result{}, err
	}
	raw, err := json.Marshal(out)
	require.NoError(t, err)
	var res report.Result
	require.NoError(t, json.Unmarshal(raw, &res))
	return res, nil
}

func (b *testBundle) get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := b.server.Client().Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(body)
}

func TestGenerate(t *testing.T) {
	t.Parallel()
	for name, setup := range map[string]func(*testing.T, report.Config) *testBundle{"local": setup, "s3": setupS3} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testGenerate(t, setup(t, report.Config{StageDelay: -1}))
		})
	}
}

func testGenerate(t *testing.T, b *testBundle) {
	rec := &recorder{}
	before := time.Now()
	res, err := b.run(t.Context(), t, "r:42/../x", `{"startDate":"2024-02-28","endDate":"2024-03-01"}`, rec)
	require.NoError(t, err)

	assert.Equal(t, []streamer.Update{
		{Percentage: 10, Message: "querying data"},
		{Percentage: 40, Message: "aggregating"},
		{Percentage: 70, Message: "rendering"},
		{Percentage: 90, Message: "uploading"},
	}, rec.all())

	// 2024 is a leap year: Feb 28, Feb 29, Mar 1.
	assert.Equal(t, 3*24, res.Rows)
	require.True(t, strings.HasPrefix(res.URL, b.baseURL), res.URL)
	keys := b.store.stored()
	require.Len(t, keys, 1)
	assert.Regexp(t, `^reports/r_42____x-[0-9a-f]{16}\.csv$`, keys[0])
	assert.True(t, strings.HasPrefix(res.URL, b.baseURL+keys[0]+"?"), res.URL)
	assert.WithinRange(t, res.ExpiresAt, before.Add(report.DefaultTTL-time.Second), time.Now().Add(report.DefaultTTL))

	// The report is served at its URL.
	status, hdr, data := b.get(t, res.URL)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, int(res.Size), len(data))
	assert.Equal(t, report.ContentType, hdr.Get("Content-Type"))
	lines := strings.Split(strings.TrimSuffix(data, "\n"), "\n")
	require.Len(t, lines, res.Rows+1)
	assert.Equal(t, "date,time,value", lines[0])
	assert.Regexp(t, `^2024-02-28,00:00,\d{1,2}\.\d\d$`, lines[1])
	assert.Regexp(t, `^2024-02-28,23:00,\d{1,2}\.\d\d$`, lines[24])
	assert.Regexp(t, `^2024-02-29,00:00,`, lines[25])
	assert.Regexp(t, `^2024-03-01,23:00,`, lines[72])

	// ... and to nobody without the signature.
	status, _, body := b.get(t, strings.Split(res.URL, "?")[0])
	assert.Equal(t, http.StatusForbidden, status, "no signature")
	assert.NotContains(t, body, "date,time,value")

	// The content is deterministic; the key is unique.
	res2, err := b.run(t.Context(), t, "r:42/../x", `{"startDate":"2024-02-28","endDate":"2024-03-01"}`, streamer.Discard)
	require.NoError(t, err)
	assert.NotEqual(t, res.URL, res2.URL)
	assert.Equal(t, res.Size, res2.Size)
	status, _, data2 := b.get(t, res2.URL)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, data, data2)
	assert.Len(t, b.store.stored(), 2)
}

func TestGenerateTTL(t *testing.T) {
	t.Parallel()
	b := setup(t, report.Config{StageDelay: -1, TTL: time.Second, Prefix: "out/csv/"})
	res, err := b.run(t.Context(), t, "ttl", `{"startDate":"2024-01-01","endDate":"2024-01-01"}`, streamer.Discard)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(res.URL, b.baseURL+"out/csv/ttl-"), res.URL)
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, _, _ := b.get(t, res.URL)
		if status == http.StatusForbidden {
			break
		}
		require.Equal(t, http.StatusOK, status)
		require.True(t, time.Now().Before(deadline), "the URL of a report with a TTL of 1s still works after 15s")
		time.Sleep(100 * time.Millisecond)
	}
	assert.False(t, time.Now().Before(res.ExpiresAt), "refused before ExpiresAt")
}

func TestGenerateRowsPerDay(t *testing.T) {
	t.Parallel()
	b := setup(t, report.Config{StageDelay: -1, RowsPerDay: 96})
	res, err := b.run(t.Context(), t, "one-day", `{"startDate":"2023-06-15","endDate":"2023-06-15"}`, streamer.Discard)
	require.NoError(t, err)
	assert.Equal(t, 96, res.Rows)
	status, _, body := b.get(t, res.URL)
	require.Equal(t, http.StatusOK, status)
	sc := bufio.NewScanner(strings.NewReader(body))
	var times []string
	for sc.Scan() {
		if f := strings.Split(sc.Text(), ","); f[0] != "date" {
			times = append(times, f[1])
		}
	}
	require.Len(t, times, 96)
	assert.Equal(t, "00:00", times[0])
	assert.Equal(t, "00:15", times[1])
	assert.Equal(t, "23:45", times[95])
}

func TestGenerateMaxSpan(t *testing.T) {
	t.Parallel()
	b := setup(t, report.Config{StageDelay: -1})
	res, err := b.run(t.Context(), t, "long", `{"startDate":"2024-01-01","endDate":"2025-01-01"}`, streamer.Discard)
	require.NoError(t, err, "a span of 366 days is allowed")
	assert.Equal(t, 367*24, res.Rows)
}

func TestGenerateCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, report.Config{StageDelay: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	rep := streamer.ReporterFunc(func(context.Context, streamer.Update) error {
		cancel() // cancel during the first stage's pause
		return nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := b.run(ctx, t, "c", `{"startDate":"2024-01-01","endDate":"2024-01-02"}`, rep)
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("generate did not honour cancel")
	}
	assert.Empty(t, b.store.stored())
}

func TestGenerateDefaultStageDelay(t *testing.T) {
	t.Parallel()
	b := setup(t, report.Config{})
	start := time.Now()
	_, err := b.run(t.Context(), t, "slow", `{"startDate":"2024-01-01","endDate":"2024-01-01"}`, streamer.Discard)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 4*report.DefaultStageDelay)
}

func TestValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, report.Config{StageDelay: -1})
	tests := []struct {
		name, payload, field, rule string
	}{
		{"missing startDate", `{"endDate":"2024-01-01"}`, "startDate", "required"},
		{"missing endDate", `{"startDate":"2024-01-01"}`, "endDate", "required"},
		{"start after end", `{"startDate":"2024-01-02","endDate":"2024-01-01"}`, "endDate", "gtefield"},
		{"span 367 days", `{"startDate":"2024-01-01","endDate":"2025-01-02"}`, "endDate", "max_span"},
		{"bad format", `{"startDate":"2024-1-01","endDate":"2024-01-02"}`, "startDate", "datetime"},
		{"slashes", `{"startDate":"2024-01-01","endDate":"01/02/2024"}`, "endDate", "datetime"},
		{"no such day", `{"startDate":"2023-02-29","endDate":"2023-03-01"}`, "startDate", "datetime"},
		{"with time", `{"startDate":"2024-01-01T00:00:00Z","endDate":"2024-01-02"}`, "startDate", "datetime"},
		{"number", `{"startDate":20240101,"endDate":"2024-01-02"}`, "startDate", "type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			_, err := b.run(t.Context(), t, "v", tc.payload, rec)
			require.Error(t, err)
			var se *streamer.Error
			require.True(t, errors.As(err, &se), "error %v is not a *streamer.Error", err)
			require.Equal(t, streamer.CodeValidation, se.Code)
			details, ok := se.Details.([]streamer.FieldError)
			require.True(t, ok, "details %#v", se.Details)
			require.NotEmpty(t, details)
			assert.Equal(t, tc.field, details[0].Field)
			assert.Equal(t, tc.rule, details[0].Rule)
			assert.NotEmpty(t, details[0].Message)
			assert.Empty(t, rec.all())
		})
	}
	for _, payload := range []string{"", "null", "[]", `"2024-01-01"`} {
		req := &streamer.Request{ID: "v", Action: "generate_report", Payload: json.RawMessage(payload)}
		_, err := b.handler.Serve(t.Context(), req, streamer.Discard)
		assert.Equal(t, streamer.CodeValidation, streamer.CodeOf(err), "payload %q", payload)
	}
	assert.Empty(t, b.store.stored())
}

func TestGenerateCancelWhileUploading(t *testing.T) {
	t.Parallel()
	b := setup(t, report.Config{StageDelay: -1})
	ctx, cancel := context.WithCancel(t.Context())
	rep := streamer.ReporterFunc(func(_ context.Context, u streamer.Update) error {
		if u.Message == "uploading" {
			cancel()
		}
		return nil
	})
	_, err := b.run(ctx, t, "c", `{"startDate":"2024-01-01","endDate":"2024-01-02"}`, rep)
	require.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, b.store.stored())
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	st, err := localblob.New(localblob.Config{Dir: t.TempDir(), BaseURL: "http://127.0.0.1:1/blobs/"})
	require.NoError(t, err)
	tests := map[string]report.Config{
		"no store":        {},
		"negative rows":   {Store: st, RowsPerDay: -1},
		"too many rows":   {Store: st, RowsPerDay: 1441},
		"rows over a day": {Store: st, RowsPerDay: 100000},
		"prefix no slash": {Store: st, Prefix: "reports"},
		"prefix dotdot":   {Store: st, Prefix: "../reports/"},
		"prefix absolute": {Store: st, Prefix: "/reports/"},
		"TTL too short":   {Store: st, TTL: time.Millisecond},
		"TTL negative":    {Store: st, TTL: -time.Hour},
		"TTL over 7 days": {Store: st, TTL: 8 * 24 * time.Hour},
	}
	for name, cfg := range tests {
		_, err := report.New(cfg)
		assert.Error(t, err, name)
	}
	p, err := report.New(report.Config{Store: st, Prefix: "a/b/", TTL: 7 * 24 * time.Hour})
	require.NoError(t, err)
	assert.Equal(t, "report", p.Name)
}
