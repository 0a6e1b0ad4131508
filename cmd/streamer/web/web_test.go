package web_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/cmd/streamer/web"
)

func readIndex(t *testing.T) string {
	t.Helper()
	b, err := fs.ReadFile(web.FS, "index.html")
	require.NoError(t, err)
	return string(b)
}

func TestIndexIDs(t *testing.T) {
	t.Parallel()
	page := readIndex(t)
	for _, id := range []string{
		"token", "connect", "state", "delay-ms", "delay-steps", "start-delay",
		"report-start", "report-end", "start-report", "drop", "jobs",
	} {
		assert.Equal(t, 1, strings.Count(page, `id="`+id+`"`), "element #%s", id)
	}
	// Each job row is built with these classes.
	for _, cls := range []string{`"job"`, `"bar"`, `"pct"`, `"msg"`, `"status"`, `"cancel secondary"`} {
		assert.Contains(t, page, cls)
	}
	assert.Contains(t, page, "li.dataset.id = job.id")
	assert.Contains(t, page, `"/ws?token="`)
	for _, action := range []string{`"resume"`, `"cancel"`, `"delay"`, `"generate_report"`, "after_seq"} {
		assert.Contains(t, page, action)
	}
}

func TestIndexSelfContained(t *testing.T) {
	t.Parallel()
	page := readIndex(t)
	for _, pattern := range []string{
		`(?i)<link`,            // stylesheets, icons, preloads
		`(?i)<script[^>]+src=`, // external scripts
		`(?i)\ssrc=`,           // images, frames
		`@import|\burl\(`,      // CSS resources
		`https?://`,            // absolute URLs of any kind
		`innerHTML`,            // text is set with textContent only
	} {
		assert.False(t, regexp.MustCompile(pattern).MatchString(page), "index.html matches %s", pattern)
	}
}

func TestServe(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.FileServerFS(web.FS)) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/", nil)
	require.NoError(t, err)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Equal(t, readIndex(t), string(body))
}
