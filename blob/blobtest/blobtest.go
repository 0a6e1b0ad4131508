// Package blobtest is the conformance suite of [blob.Store]
// implementations. Every backend's tests call [Run]; a store passes when
// its URLs, fetched over real HTTP, download what Put stored with its
// content type, expire, refuse any change, and answer 404 for a key that
// holds nothing, and when it refuses bad keys, expiries, content types and
// objects over its size limit.
package blobtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/blob"
)

// MaxSize is the size limit the stores under test must be configured
// with: Put must accept MaxSize bytes and refuse one more.
const MaxSize = 64 << 10

// expiryDeadline bounds the wait for a short URL to expire.
const expiryDeadline = 15 * time.Second

// Run runs the suite against the stores newStore returns. newStore is
// called once per subtest, from that subtest; it must return a store with
// a size limit of [MaxSize], empty or at least without the keys the test
// uses (every test uses keys of its own), and should register any cleanup
// with t.Cleanup. The store's URLs must be reachable from this process.
// Every subtest calls t.Parallel.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"RoundTrip", testRoundTrip},
		{"ContentType", testContentType},
		{"Readers", testReaders},
		{"Replace", testReplace},
		{"Empty", testEmpty},
		{"UnknownKey", testUnknownKey},
		{"Anonymous", testAnonymous},
		{"Tampered", testTampered},
		{"OtherKey", testOtherKey},
		{"Expiry", testExpiry},
		{"InvalidExpiry", testInvalidExpiry},
		{"InvalidKeys", testInvalidKeys},
		{"ValidKeys", testValidKeys},
		{"MaxSize", testMaxSize},
		{"Canceled", testCanceled},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newStore(t)
			require.NotNil(t, st, "newStore returned nil")
			tc.fn(t, &suite{t: t, st: st, prefix: uniquePrefix()})
		})
	}
}

type suite struct {
	t      *testing.T
	st     blob.Store
	prefix string
}

// uniquePrefix keeps the keys of a test apart from every other's, for
// stores shared between tests.
func uniquePrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("blobtest-%x/", b)
}

// key returns a key of the test's own.
func (s *suite) key(name string) string { return s.prefix + name }

func (s *suite) put(key string, data []byte, opts blob.PutOptions) {
	s.t.Helper()
	require.NoError(s.t, s.st.Put(s.t.Context(), key, bytes.NewReader(data), opts), "Put %s", key)
}

func (s *suite) url(key string, ttl time.Duration) string {
	s.t.Helper()
	u, err := s.st.URL(s.t.Context(), key, time.Now().Add(ttl))
	require.NoError(s.t, err, "URL %s", key)
	return u
}

// response is a fetched URL.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (s *suite) get(rawURL string) response {
	s.t.Helper()
	return fetch(s.t, http.MethodGet, rawURL)
}

func fetch(t *testing.T, method, rawURL string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, rawURL, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err, "%s %s", method, rawURL)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// randomBytes returns n random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func testRoundTrip(t *testing.T, s *suite) {
	data := []byte("date,time,value\n2024-01-01,00:00,12.34\n")
	key := s.key("reports/r-1.csv")
	s.put(key, data, blob.PutOptions{ContentType: "text/csv; charset=utf-8", ExpiresAt: time.Now().Add(time.Hour)})
	u := s.url(key, time.Hour)
	parsed, err := url.Parse(u)
	require.NoError(t, err)
	assert.Contains(t, []string{"http", "https"}, parsed.Scheme, "URL %s", u)
	// Twice: a URL may be used more than once until it expires.
	for range 2 {
		r := s.get(u)
		require.Equal(t, http.StatusOK, r.status, "GET %s: %s", u, r.body)
		assert.Equal(t, data, r.body)
		assert.Equal(t, "text/csv; charset=utf-8", r.header.Get("Content-Type"))
	}
	// Binary data, larger than one read buffer.
	bin := randomBytes(40 << 10)
	key = s.key("bin/data.bin")
	s.put(key, bin, blob.PutOptions{ContentType: "application/octet-stream"})
	r := s.get(s.url(key, time.Hour))
	require.Equal(t, http.StatusOK, r.status)
	assert.True(t, bytes.Equal(bin, r.body), "binary round trip")
}

func testContentType(t *testing.T, s *suite) {
	key := s.key("default")
	s.put(key, []byte("x"), blob.PutOptions{})
	r := s.get(s.url(key, time.Hour))
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, blob.DefaultContentType, r.header.Get("Content-Type"), "no content type given")

	key = s.key("page.json")
	s.put(key, []byte(`{"a":1}`), blob.PutOptions{ContentType: "application/json"})
	r = s.get(s.url(key, time.Hour))
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "application/json", r.header.Get("Content-Type"))

	for _, ct := range []string{"not a type", "text/", "text/plain\r\nX-Injected: 1", "text/plain; charset"} {
		err := s.st.Put(t.Context(), s.key("bad-ct"), strings.NewReader("x"), blob.PutOptions{ContentType: ct})
		assert.ErrorIs(t, err, blob.ErrInvalidContentType, "content type %q", ct)
	}
	assert.Equal(t, http.StatusNotFound, s.get(s.url(s.key("bad-ct"), time.Hour)).status, "a refused Put stores nothing")
}

func testReaders(t *testing.T, s *suite) {
	data := randomBytes(10 << 10)
	readers := map[string]io.Reader{
		"bytes.Reader":  bytes.NewReader(data),
		"one byte":      iotest.OneByteReader(bytes.NewReader(data)),
		"multi":         io.MultiReader(bytes.NewReader(data[:100]), bytes.NewReader(data[100:])),
		"half consumed": halfRead(data),
	}
	for name, r := range readers {
		want := data
		if name == "half consumed" {
			want = data[len(data)/2:]
		}
		key := s.key(strings.ReplaceAll(name, " ", "-"))
		require.NoError(t, s.st.Put(t.Context(), key, r, blob.PutOptions{}), name)
		got := s.get(s.url(key, time.Hour))
		require.Equal(t, http.StatusOK, got.status, name)
		assert.True(t, bytes.Equal(want, got.body), "%s: the object is what was left to read", name)
	}
}

// halfRead returns a seekable reader of data positioned at its middle.
func halfRead(data []byte) io.Reader {
	r := bytes.NewReader(data)
	_, _ = r.Seek(int64(len(data)/2), io.SeekStart)
	return r
}

func testReplace(t *testing.T, s *suite) {
	key := s.key("replaced.txt")
	s.put(key, []byte("first version, longer"), blob.PutOptions{ContentType: "text/plain"})
	u := s.url(key, time.Hour)
	s.put(key, []byte("second"), blob.PutOptions{ContentType: "text/markdown"})
	r := s.get(u)
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "second", string(r.body))
	assert.Equal(t, "text/markdown", r.header.Get("Content-Type"))
}

func testEmpty(t *testing.T, s *suite) {
	key := s.key("empty")
	s.put(key, nil, blob.PutOptions{ContentType: "text/plain"})
	r := s.get(s.url(key, time.Hour))
	require.Equal(t, http.StatusOK, r.status)
	assert.Empty(t, r.body)
}

func testUnknownKey(t *testing.T, s *suite) {
	r := s.get(s.url(s.key("never-stored.csv"), time.Hour))
	assert.Equal(t, http.StatusNotFound, r.status)
	s.put(s.key("dir/file"), []byte("x"), blob.PutOptions{})
	assert.Equal(t, http.StatusNotFound, s.get(s.url(s.key("dir/other"), time.Hour)).status)
	assert.Equal(t, http.StatusNotFound, s.get(s.url(s.key("dir/file.bak"), time.Hour)).status)
}

func testAnonymous(t *testing.T, s *suite) {
	key := s.key("private.csv")
	s.put(key, []byte("secret"), blob.PutOptions{})
	u, err := url.Parse(s.url(key, time.Hour))
	require.NoError(t, err)
	u.RawQuery = ""
	r := s.get(u.String())
	assert.Equal(t, http.StatusForbidden, r.status, "GET without the signature")
	assert.NotContains(t, string(r.body), "secret")
	r = fetch(t, http.MethodPut, u.String())
	assert.GreaterOrEqual(t, r.status, 400, "PUT without a signature")
	assert.Equal(t, "secret", string(s.get(s.url(key, time.Hour)).body), "the object is unchanged")
}

// testTampered changes each query parameter of a URL in turn, and the
// path: every change is refused.
func testTampered(t *testing.T, s *suite) {
	key := s.key("tamper.csv")
	s.put(key, []byte("secret"), blob.PutOptions{})
	raw := s.url(key, time.Hour)
	u, err := url.Parse(raw)
	require.NoError(t, err)
	q := u.Query()
	require.NotEmpty(t, q, "a signed URL has a query")
	for name := range q {
		bad := *u
		bq := u.Query()
		v := bq.Get(name)
		bq.Set(name, flipLast(v))
		bad.RawQuery = bq.Encode()
		r := s.get(bad.String())
		assert.Equal(t, http.StatusForbidden, r.status, "parameter %s changed from %q to %q", name, v, bq.Get(name))
		assert.NotContains(t, string(r.body), "secret")

		bq = u.Query()
		bq.Del(name)
		bad.RawQuery = bq.Encode()
		r = s.get(bad.String())
		assert.Equal(t, http.StatusForbidden, r.status, "parameter %s left out", name)
	}
	bad := *u
	bq := u.Query()
	bq.Set("extra", "1")
	bad.RawQuery = bq.Encode()
	assert.Equal(t, http.StatusForbidden, s.get(bad.String()).status, "a parameter added")
	assert.Equal(t, http.StatusOK, s.get(raw).status, "the URL itself still works")
}

// flipLast changes the last character of v (or makes it non-empty).
func flipLast(v string) string {
	if v == "" {
		return "x"
	}
	c := v[len(v)-1]
	switch {
	case c == '0':
		c = '1'
	case c >= '1' && c <= '9', c >= 'b' && c <= 'z', c >= 'B' && c <= 'Z':
		c--
	default:
		c = '0'
	}
	return v[:len(v)-1] + string(c)
}

// testOtherKey: a URL of one key does not download another by changing
// its path.
func testOtherKey(t *testing.T, s *suite) {
	mine, other := s.key("mine.csv"), s.key("other.csv")
	s.put(mine, []byte("mine"), blob.PutOptions{})
	s.put(other, []byte("secret"), blob.PutOptions{})
	raw := s.url(mine, time.Hour)
	require.Contains(t, raw, "mine.csv")
	bad := strings.Replace(raw, "mine.csv", "other.csv", 1)
	r := s.get(bad)
	assert.Equal(t, http.StatusForbidden, r.status, "the URL of %s used for %s", mine, other)
	assert.NotContains(t, string(r.body), "secret")
}

func testExpiry(t *testing.T, s *suite) {
	key := s.key("short.csv")
	s.put(key, []byte("short-lived"), blob.PutOptions{ContentType: "text/csv"})
	short, err := s.st.URL(t.Context(), key, time.Now().Add(1500*time.Millisecond))
	require.NoError(t, err)
	long := s.url(key, time.Hour)
	deadline := time.Now().Add(expiryDeadline)
	for {
		r := s.get(short)
		if r.status == http.StatusForbidden {
			assert.NotContains(t, string(r.body), "short-lived")
			break
		}
		require.Equal(t, http.StatusOK, r.status, "before it expires, the URL works")
		require.True(t, time.Now().Before(deadline), "a URL expiring in 1.5s still works after %s", expiryDeadline)
		time.Sleep(100 * time.Millisecond)
	}
	assert.Equal(t, http.StatusOK, s.get(long).status, "a URL of the same key that has not expired still works")
}

func testInvalidExpiry(t *testing.T, s *suite) {
	key := s.key("expiry.csv")
	ctx := t.Context()
	for name, at := range map[string]time.Time{
		"past":        time.Now().Add(-time.Minute),
		"zero":        {},
		"beyond 7d":   time.Now().Add(blob.MaxURLTTL + time.Hour),
		"far future ": time.Now().Add(100 * 365 * 24 * time.Hour),
	} {
		_, err := s.st.URL(ctx, key, at)
		assert.ErrorIs(t, err, blob.ErrInvalidExpiry, "URL expiring %s", name)
	}
	u, err := s.st.URL(ctx, key, time.Now().Add(blob.MaxURLTTL-time.Minute))
	assert.NoError(t, err, "a URL may last almost MaxURLTTL")
	assert.NotEmpty(t, u)

	err = s.st.Put(ctx, key, strings.NewReader("x"), blob.PutOptions{ExpiresAt: time.Now().Add(-time.Second)})
	assert.ErrorIs(t, err, blob.ErrInvalidExpiry, "Put of an object already expired")
	assert.Equal(t, http.StatusNotFound, s.get(s.url(key, time.Hour)).status, "a refused Put stores nothing")
}

// InvalidKeys are keys every store refuses.
var InvalidKeys = []string{
	"", "/", "/abs", "trailing/", "a//b", ".", "..", "../up", "a/../b", "a/..", "./a", "a/./b",
	".hidden", "dir/.hidden", ".secret", `a\b`, `..\up`, "a b", "a%2fb", "%2e%2e", "a?b", "a#b", "a&b",
	"a:b", "a;b", "a*b", "a\x00b", "a\nb", "a\tb", "ä", "a/ü", "\u2215etc", "~user", "a~", "C:/x",
	strings.Repeat("a", blob.MaxSegmentLen+1),
	strings.Repeat(strings.Repeat("b", 99)+"/", 6) + "c",
}

func testInvalidKeys(t *testing.T, s *suite) {
	ctx := t.Context()
	for _, key := range InvalidKeys {
		err := s.st.Put(ctx, key, strings.NewReader("x"), blob.PutOptions{})
		assert.ErrorIs(t, err, blob.ErrInvalidKey, "Put %q", key)
		_, err = s.st.URL(ctx, key, time.Now().Add(time.Hour))
		assert.ErrorIs(t, err, blob.ErrInvalidKey, "URL %q", key)
		assert.ErrorIs(t, blob.CheckKey(key), blob.ErrInvalidKey, "CheckKey %q", key)
	}
}

func testValidKeys(t *testing.T, s *suite) {
	long := strings.Repeat("k", blob.MaxSegmentLen)
	keys := []string{
		"a", "A-Z_a-z.0-9", "x.y.z", "dir/sub/file.tar.gz", "v1..2", "trailing.", "-dash", "_under",
		long, "d/" + long + "/" + long,
	}
	for _, k := range keys {
		key := s.key(k)
		require.NoError(t, blob.CheckKey(key), key)
		s.put(key, []byte("content of "+k), blob.PutOptions{ContentType: "text/plain"})
	}
	for _, k := range keys {
		key := s.key(k)
		r := s.get(s.url(key, time.Hour))
		require.Equal(t, http.StatusOK, r.status, key)
		assert.Equal(t, "content of "+k, string(r.body), key)
	}
	assert.NoError(t, blob.CheckKey(strings.Repeat(strings.Repeat("m", 127)+"/", 3)+strings.Repeat("m", 128)), "MaxKeyLen bytes")
}

func testMaxSize(t *testing.T, s *suite) {
	ctx := t.Context()
	data := randomBytes(MaxSize + 1)
	key := s.key("max")
	s.put(key, data[:MaxSize], blob.PutOptions{})
	r := s.get(s.url(key, time.Hour))
	require.Equal(t, http.StatusOK, r.status)
	assert.Len(t, r.body, MaxSize)

	for name, body := range map[string]func() io.Reader{
		"seekable":   func() io.Reader { return bytes.NewReader(data) },
		"unseekable": func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
	} {
		over := s.key("over-" + name)
		err := s.st.Put(ctx, over, body(), blob.PutOptions{})
		assert.ErrorIs(t, err, blob.ErrTooLarge, name)
		assert.Equal(t, http.StatusNotFound, s.get(s.url(over, time.Hour)).status, "%s: nothing is stored", name)
		// Replacing an object with one too large keeps the old one.
		err = s.st.Put(ctx, key, body(), blob.PutOptions{})
		assert.ErrorIs(t, err, blob.ErrTooLarge, name)
	}
	assert.Len(t, s.get(s.url(key, time.Hour)).body, MaxSize, "the object is unchanged")
}

func testCanceled(t *testing.T, s *suite) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	key := s.key("canceled")
	err := s.st.Put(ctx, key, bytes.NewReader(randomBytes(1000)), blob.PutOptions{})
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled), "error %v is not context.Canceled", err)
	assert.Equal(t, http.StatusNotFound, s.get(s.url(key, time.Hour)).status, "a canceled Put stores nothing")
}

func testConcurrent(t *testing.T, s *suite) {
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			key := s.key(fmt.Sprintf("c/%d", i%4))
			errs[i] = s.st.Put(t.Context(), key, strings.NewReader(strings.Repeat(fmt.Sprint(i%4), 1000)), blob.PutOptions{})
		})
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "Put %d", i)
	}
	for i := range 4 {
		r := s.get(s.url(s.key(fmt.Sprintf("c/%d", i)), time.Hour))
		require.Equal(t, http.StatusOK, r.status)
		assert.Equal(t, strings.Repeat(fmt.Sprint(i), 1000), string(r.body))
	}
}
