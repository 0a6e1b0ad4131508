package report_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
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

type testBundle struct {
	dir     string
	baseURL string
	handler streamer.Handler
	server  *httptest.Server
}

// setup serves a fresh report dir at <server>/reports/ and builds the plugin
// with cfg (Dir and BaseURL filled in).
func setup(t *testing.T, cfg report.Config) *testBundle {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "reports")
	mux := http.NewServeMux()
	mux.Handle("/reports/", http.StripPrefix("/reports", report.FileServer(dir)))
	srv := httptest.NewServer(mux) // listens on 127.0.0.1
	t.Cleanup(srv.Close)

	cfg.Dir = dir
	cfg.BaseURL = srv.URL + "/reports/"
	p, err := report.New(cfg)
	require.NoError(t, err)
	require.Equal(t, "report", p.Name)
	require.Len(t, p.Actions, 1)
	a := p.Actions[0]
	require.Equal(t, "generate_report", a.Name)
	require.Equal(t, streamer.ModeAsync, a.Options.Mode)
	return &testBundle{dir: dir, baseURL: cfg.BaseURL, handler: a.Handler, server: srv}
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

// files lists the names in the report dir.
func (b *testBundle) files(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(b.dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
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
	b := setup(t, report.Config{StageDelay: -1})
	rec := &recorder{}
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
	name := strings.TrimPrefix(res.URL, b.baseURL)
	assert.Regexp(t, `^r_42____x-[0-9a-f]{16}\.csv$`, name)
	assert.Equal(t, []string{name}, b.files(t), "only the report is left in the dir")

	st, err := os.Stat(filepath.Join(b.dir, name))
	require.NoError(t, err)
	assert.Equal(t, st.Size(), res.Size)

	data, err := os.ReadFile(filepath.Join(b.dir, name))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	require.Len(t, lines, res.Rows+1)
	assert.Equal(t, "date,time,value", lines[0])
	assert.Regexp(t, `^2024-02-28,00:00,\d{1,2}\.\d\d$`, lines[1])
	assert.Regexp(t, `^2024-02-28,23:00,\d{1,2}\.\d\d$`, lines[24])
	assert.Regexp(t, `^2024-02-29,00:00,`, lines[25])
	assert.Regexp(t, `^2024-03-01,23:00,`, lines[72])

	// The file is served at its URL.
	status, hdr, body := b.get(t, res.URL)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, string(data), body)
	assert.Equal(t, "text/csv; charset=utf-8", hdr.Get("Content-Type"))

	// The content is deterministic; the name is unique.
	res2, err := b.run(t.Context(), t, "r:42/../x", `{"startDate":"2024-02-28","endDate":"2024-03-01"}`, streamer.Discard)
	require.NoError(t, err)
	assert.NotEqual(t, res.URL, res2.URL)
	assert.Equal(t, res.Size, res2.Size)
	data2, err := os.ReadFile(filepath.Join(b.dir, strings.TrimPrefix(res2.URL, b.baseURL)))
	require.NoError(t, err)
	assert.Equal(t, string(data), string(data2))
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
	assert.Empty(t, b.files(t))
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
	assert.Empty(t, b.files(t))
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	tests := map[string]report.Config{
		"no dir":          {BaseURL: "http://127.0.0.1/reports/"},
		"no base url":     {Dir: dir},
		"bad base url":    {Dir: dir, BaseURL: "http://[::1"},
		"negative rows":   {Dir: dir, BaseURL: "/r/", RowsPerDay: -1},
		"too many rows":   {Dir: dir, BaseURL: "/r/", RowsPerDay: 1441},
		"dir is a file":   {Dir: file, BaseURL: "/r/"},
		"dir under file":  {Dir: filepath.Join(file, "sub"), BaseURL: "/r/"},
		"rows over a day": {Dir: dir, BaseURL: "/r/", RowsPerDay: 100000},
	}
	for name, cfg := range tests {
		_, err := report.New(cfg)
		assert.Error(t, err, name)
	}
	p, err := report.New(report.Config{Dir: filepath.Join(dir, "new", "reports"), BaseURL: "/r/"})
	require.NoError(t, err)
	assert.Equal(t, "report", p.Name)
	assert.DirExists(t, filepath.Join(dir, "new", "reports"))
}

func TestFileServer(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := filepath.Join(root, "reports")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "d.csv"), 0o755))
	write := func(p, s string) { require.NoError(t, os.WriteFile(p, []byte(s), 0o644)) }
	write(filepath.Join(root, "secret.csv"), "secret")
	write(filepath.Join(dir, "ok.csv"), "a,b\n1,2\n")
	write(filepath.Join(dir, "sub", "nested.csv"), "nested")
	write(filepath.Join(dir, "notes.txt"), "text")
	write(filepath.Join(dir, ".report-1.tmp"), "partial")
	write(filepath.Join(dir, ".hidden.csv"), "hidden")
	require.NoError(t, os.Symlink(filepath.Join(root, "secret.csv"), filepath.Join(dir, "link.csv")))

	h := report.FileServer(dir)
	serve := func(method, target string) *httptest.ResponseRecorder {
		req := httptest.NewRequestWithContext(t.Context(), method, "http://127.0.0.1"+target, nil)
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, req)
		return rr
	}

	rr := serve(http.MethodGet, "/ok.csv")
	require.Equal(t, http.StatusOK, rr.Code)
	assert.Equal(t, "a,b\n1,2\n", rr.Body.String())
	assert.Equal(t, "text/csv; charset=utf-8", rr.Header().Get("Content-Type"))
	assert.Equal(t, "nosniff", rr.Header().Get("X-Content-Type-Options"))

	rr = serve(http.MethodHead, "/ok.csv")
	assert.Equal(t, http.StatusOK, rr.Code)
	assert.Empty(t, rr.Body.String())

	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		rr = serve(m, "/ok.csv")
		assert.Equal(t, http.StatusMethodNotAllowed, rr.Code, m)
		assert.Equal(t, "GET, HEAD", rr.Header().Get("Allow"))
	}

	for _, target := range []string{
		"/",
		"/../secret.csv",
		"/%2e%2e/secret.csv",
		"/..%2fsecret.csv",
		"/..%5csecret.csv",
		"/sub/nested.csv",
		"/sub%2fnested.csv",
		"/sub/",
		"/sub",
		"/d.csv",
		"/notes.txt",
		"/.report-1.tmp",
		"/.hidden.csv",
		"/link.csv",
		"/missing.csv",
		"/ok.csv/",
		"/ok.CSV",
		"//ok.csv",
		"/ok.csv%00",
	} {
		rr := serve(http.MethodGet, target)
		assert.Equal(t, http.StatusNotFound, rr.Code, target)
		assert.NotContains(t, rr.Body.String(), "secret", target)
		assert.NotContains(t, rr.Body.String(), "nested", target)
	}
}

func TestFileServerOverHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t, report.Config{StageDelay: -1})
	require.NoError(t, os.WriteFile(filepath.Join(path.Dir(b.dir), "secret.csv"), []byte("secret"), 0o644))
	res, err := b.run(t.Context(), t, "http", `{"startDate":"2024-01-01","endDate":"2024-01-01"}`, streamer.Discard)
	require.NoError(t, err)
	status, _, body := b.get(t, res.URL)
	require.Equal(t, http.StatusOK, status)
	assert.Len(t, body, int(res.Size))

	for _, target := range []string{"/reports/", "/reports/..%2fsecret.csv", "/reports/%2e%2e%2fsecret.csv"} {
		status, _, body := b.get(t, b.server.URL+target)
		assert.Equal(t, http.StatusNotFound, status, target)
		assert.NotContains(t, body, "secret", target)
	}
}
