package localblob_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/blob"
	"github.com/streamer-go/streamer/blob/blobtest"
	"github.com/streamer-go/streamer/blob/localblob"
)

// serve returns a Store of a fresh directory, served at <server>/blobs/.
func serve(t *testing.T, cfg localblob.Config) (*localblob.Store, *httptest.Server) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "blobs")
	}
	cfg.BaseURL = srv.URL + "/blobs/"
	st, err := localblob.New(cfg)
	require.NoError(t, err)
	mux.Handle("/blobs/", http.StripPrefix("/blobs", st))
	return st, srv
}

func TestConformance(t *testing.T) {
	t.Parallel()
	blobtest.Run(t, func(t *testing.T) blob.Store {
		st, _ := serve(t, localblob.Config{MaxSize: blobtest.MaxSize})
		return st
	})
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func get(t *testing.T, method, url string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(body)
}

// TestNoTraversal: whatever the path, nothing outside the directory, nor
// the secret, is served, even with a valid signature of the odd key.
func TestNoTraversal(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := filepath.Join(root, "blobs")
	secret := []byte(strings.Repeat("s", 32))
	st, srv := serve(t, localblob.Config{Dir: dir, Secret: secret})
	require.NoError(t, os.WriteFile(filepath.Join(root, "outside.csv"), []byte("outside"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	require.NoError(t, os.Symlink(filepath.Join(root, "outside.csv"), filepath.Join(dir, "link.csv")))
	require.NoError(t, os.Symlink(root, filepath.Join(dir, "sub", "up")))
	require.NoError(t, st.Put(t.Context(), "ok.csv", strings.NewReader("inside"), blob.PutOptions{}))

	exp := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	// sign mirrors the store's signature, to try keys it would never sign.
	sign := func(key string) string {
		m := hmac.New(sha256.New, secret)
		_, _ = io.WriteString(m, "streamer-blob-v1\n"+key+"\n"+exp)
		return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	status, _, body := get(t, http.MethodGet, srv.URL+"/blobs/ok.csv?expires="+exp+"&sig="+sign("ok.csv"))
	require.Equal(t, http.StatusOK, status, "the mirrored signature is right")
	require.Equal(t, "inside", body)

	for _, key := range []string{
		"../outside.csv", "%2e%2e/outside.csv", "..%2foutside.csv", "sub/../../outside.csv", "link.csv",
		"sub/up/outside.csv", ".secret", "sub", "sub/", "", "%2e%2e%2foutside.csv", `..\outside.csv`,
	} {
		for _, k := range []string{key, strings.ReplaceAll(key, "%2f", "/"), strings.ReplaceAll(key, "%2e", ".")} {
			status, _, body := get(t, http.MethodGet, srv.URL+"/blobs/"+key+"?expires="+exp+"&sig="+sign(k))
			assert.Contains(t, []int{http.StatusNotFound, http.StatusForbidden, http.StatusBadRequest}, status, key)
			assert.NotContains(t, body, "outside", key)
			assert.NotContains(t, body, hex.EncodeToString(secret), key)
		}
	}
	// Put never writes outside either.
	for _, key := range blobtest.InvalidKeys {
		assert.ErrorIs(t, st.Put(t.Context(), key, strings.NewReader("x"), blob.PutOptions{}), blob.ErrInvalidKey)
	}
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	assert.Len(t, entries, 2, "only blobs/ and outside.csv in the parent")

	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		status, hdr, _ := get(t, m, srv.URL+"/blobs/ok.csv?expires="+exp+"&sig="+sign("ok.csv"))
		assert.Equal(t, http.StatusMethodNotAllowed, status, m)
		assert.Equal(t, "GET, HEAD", hdr.Get("Allow"))
	}
	status, hdr, body := get(t, http.MethodHead, srv.URL+"/blobs/ok.csv?expires="+exp+"&sig="+sign("ok.csv"))
	assert.Equal(t, http.StatusOK, status)
	assert.Empty(t, body)
	assert.Equal(t, "nosniff", hdr.Get("X-Content-Type-Options"))
	assert.Equal(t, "private, no-store", hdr.Get("Cache-Control"))
}

func TestSecret(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "blobs")
	st, srv := serve(t, localblob.Config{Dir: dir})
	require.NoError(t, st.Put(t.Context(), "r.csv", strings.NewReader("x"), blob.PutOptions{}))
	u, err := st.URL(t.Context(), "r.csv", time.Now().Add(time.Hour))
	require.NoError(t, err)
	info, err := os.Stat(filepath.Join(dir, localblob.SecretFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	// The same directory, served again: its URLs stay valid.
	st2, srv2 := serve(t, localblob.Config{Dir: dir})
	u2, err := st2.URL(t.Context(), "r.csv", time.Now().Add(time.Hour))
	require.NoError(t, err)
	status, _, _ := get(t, http.MethodGet, strings.Replace(u, srv.URL, srv2.URL, 1))
	assert.Equal(t, http.StatusOK, status, "a URL made before the restart")
	status, _, _ = get(t, http.MethodGet, u2)
	assert.Equal(t, http.StatusOK, status)

	// Another directory has another secret.
	other, srv3 := serve(t, localblob.Config{})
	require.NoError(t, other.Put(t.Context(), "r.csv", strings.NewReader("other"), blob.PutOptions{}))
	status, _, _ = get(t, http.MethodGet, strings.Replace(u, srv.URL, srv3.URL, 1))
	assert.Equal(t, http.StatusForbidden, status, "a URL of another directory")
}

func TestExpiredObjectsAndSweep(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	dir := filepath.Join(t.TempDir(), "blobs")
	st, _ := serve(t, localblob.Config{Dir: dir, Now: clk.Now})
	ctx := t.Context()
	require.NoError(t, st.Put(ctx, "reports/old.csv", strings.NewReader("old"), blob.PutOptions{ExpiresAt: clk.Now().Add(time.Hour)}))
	require.NoError(t, st.Put(ctx, "reports/new.csv", strings.NewReader("new"), blob.PutOptions{ExpiresAt: clk.Now().Add(3 * time.Hour)}))
	require.NoError(t, st.Put(ctx, "gone/x.csv", strings.NewReader("x"), blob.PutOptions{ExpiresAt: clk.Now().Add(time.Hour)}))
	require.NoError(t, st.Put(ctx, "default.bin", strings.NewReader("d"), blob.PutOptions{}))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "reports", ".tmp-crashed"), []byte("partial"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "garbage"), []byte("no metadata"), 0o600))
	oldURL, err := st.URL(ctx, "reports/old.csv", clk.Now().Add(5*time.Hour))
	require.NoError(t, err)

	n, err := st.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "only the file without metadata goes at once")

	clk.Add(2 * time.Hour)
	// Expired but not swept yet: the URL, still valid, answers 404.
	status, _, _ := get(t, http.MethodGet, oldURL)
	assert.Equal(t, http.StatusNotFound, status)

	n, err = st.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, n, "the two expired objects and the stale temporary file")
	assert.NoFileExists(t, filepath.Join(dir, "reports", "old.csv"))
	assert.FileExists(t, filepath.Join(dir, "reports", "new.csv"))
	assert.FileExists(t, filepath.Join(dir, localblob.SecretFile))

	// Empty directories go once old (their mtime is the real clock's).
	clk.Add(25 * time.Hour)
	n, err = st.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "new.csv and default.bin (24h)")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{localblob.SecretFile}, names)
}

func TestRunSweeper(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	st, _ := serve(t, localblob.Config{Now: clk.Now})
	require.NoError(t, st.Put(t.Context(), "a", strings.NewReader("a"), blob.PutOptions{ExpiresAt: clk.Now().Add(time.Minute)}))
	u, err := st.URL(t.Context(), "a", clk.Now().Add(time.Hour))
	require.NoError(t, err)
	clk.Add(2 * time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { st.RunSweeper(ctx, 10*time.Millisecond, func(err error) { t.Error(err) }); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The file is gone once the sweeper ran; a URL says 404 either way,
		// so look at the directory through Sweep's count instead.
		n, err := st.Sweep(t.Context())
		require.NoError(t, err)
		if n == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the sweeper did not run")
		time.Sleep(10 * time.Millisecond)
	}
	status, _, _ := get(t, http.MethodGet, u)
	assert.Equal(t, http.StatusNotFound, status)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunSweeper did not return after cancel")
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.MkdirAll(bad, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(bad, localblob.SecretFile), []byte("short"), 0o600))
	base := "http://127.0.0.1:1/blobs/"
	for name, cfg := range map[string]localblob.Config{
		"no dir":          {BaseURL: base},
		"no base URL":     {Dir: dir},
		"relative URL":    {Dir: dir, BaseURL: "/blobs/"},
		"no slash":        {Dir: dir, BaseURL: "http://127.0.0.1:1/blobs"},
		"query":           {Dir: dir, BaseURL: "http://127.0.0.1:1/blobs/?a=b"},
		"short secret":    {Dir: dir, BaseURL: base, Secret: []byte("short")},
		"negative size":   {Dir: dir, BaseURL: base, MaxSize: -1},
		"dir is a file":   {Dir: file, BaseURL: base},
		"bad secret file": {Dir: bad, BaseURL: base},
	} {
		_, err := localblob.New(cfg)
		assert.Error(t, err, name)
	}
}
