package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
)

// httpGet fetches u, returning the status, content type and body.
func httpGet(t *testing.T, u string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t, readTimeout), http.MethodGet, u, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

// generate_report stores its CSV in object storage (the data dir's blob
// store in dev, an S3 bucket on --aws-local) and completes with a signed,
// expiring URL: the URL downloads the CSV; without its signature, or
// changed, it is refused; another principal cannot learn it.
func TestE2EReportDownload(t *testing.T) {
	t.Parallel()
	s := shared(t)
	alice := uid("alice")
	id := uid("report")
	c := dialClient(t, s, token(t, alice, ""))
	before := time.Now()
	raw, err := c.Request(testCtx(t, 60*time.Second), "generate_report",
		map[string]string{"startDate": "2024-01-01", "endDate": "2024-01-03"}, client.WithID(id))
	require.NoError(t, err)
	var res struct {
		URL       string    `json:"url"`
		ExpiresAt time.Time `json:"expiresAt"`
		Size      int       `json:"size"`
		Rows      int       `json:"rows"`
	}
	require.NoError(t, json.Unmarshal(raw, &res), "%s", raw)
	assert.Equal(t, 3*24, res.Rows)
	assert.WithinRange(t, res.ExpiresAt, before.Add(streamer.DefaultRetention-time.Minute), time.Now().Add(streamer.DefaultRetention))
	u, err := url.Parse(res.URL)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", u.Hostname(), "the URL is served on this machine: %s", res.URL)
	assert.Contains(t, u.Path, "/reports/")

	status, ctype, body := httpGet(t, res.URL)
	require.Equal(t, http.StatusOK, status, "GET %s: %s", res.URL, body)
	assert.Equal(t, "text/csv; charset=utf-8", ctype)
	assert.Len(t, body, res.Size)
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	require.Len(t, lines, res.Rows+1)
	assert.Equal(t, "date,time,value", lines[0])
	assert.True(t, strings.HasPrefix(lines[1], "2024-01-01,00:00,"), lines[1])

	// Anonymous: the URL without its signature.
	bare := *u
	bare.RawQuery = ""
	status, _, body = httpGet(t, bare.String())
	assert.Equal(t, http.StatusForbidden, status, "GET without the signature")
	assert.NotContains(t, body, "date,time,value")

	// Tampered: each query parameter changed in turn.
	for name := range u.Query() {
		q := u.Query()
		v := q.Get(name)
		q.Set(name, v+"0")
		bad := *u
		bad.RawQuery = q.Encode()
		status, _, body = httpGet(t, bad.String())
		assert.Equal(t, http.StatusForbidden, status, "parameter %s changed", name)
		assert.NotContains(t, body, "date,time,value")
	}

	// Another principal cannot read the request, so not its URL either.
	bob := dialRaw(t, s, token(t, uid("bob"), ""))
	bob.request(streamer.ActionStatus, "", map[string]any{"request_id": id})
	bob.expectError(streamer.CodeNotFound, id)

	// The owner still gets the same URL from the request's status.
	st := dialRaw(t, s, token(t, alice, "")).status(id)
	require.Equal(t, "succeeded", st.Status)
	require.JSONEq(t, string(raw), string(st.Result))
}
