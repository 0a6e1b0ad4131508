package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var opsURL = regexp.MustCompile(`ops page:\s+(http://127\.0\.0\.1:\d+)/ops\?s=([0-9a-f]+)`)

// TestDevOpsPage: streamer dev prints the operator page's URL with its
// secret; the page answers with it, refuses without it, and changes
// nothing.
func TestDevOpsPage(t *testing.T) {
	t.Setenv("STREAMER_JWT_SECRET", "ops-dev-test-secret-0123456789abcdef-0123")
	var out lockedBuffer
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"dev", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-level", "error"}, &out, io.Discard, opsPlugins)
	}()
	defer func() { stop(); <-done }()
	var m []string
	require.Eventually(t, func() bool { m = opsURL.FindStringSubmatch(out.String()); return m != nil }, 60*time.Second, 20*time.Millisecond, "no ops page in the banner:\n%s", out.String())
	base, secret := m[1], m[2]
	get := func(method, url string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
		require.NoError(t, err)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close() //nolint:errcheck // test
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	code, body := get(http.MethodGet, base+"/ops?s="+secret+"&status=queued")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "Requests: queued")
	code, _ = get(http.MethodGet, base+"/ops?status=queued")
	require.Equal(t, http.StatusUnauthorized, code)
	wrong := "0" + secret[1:]
	if wrong == secret {
		wrong = "1" + secret[1:]
	}
	code, _ = get(http.MethodGet, base+"/ops?s="+wrong)
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = get(http.MethodPost, base+"/ops?s="+secret)
	require.Equal(t, http.StatusMethodNotAllowed, code)
}
