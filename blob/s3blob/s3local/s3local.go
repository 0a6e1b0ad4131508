// Package s3local is an S3-compatible server on this machine, for tests and
// for `streamer dev --aws-local`: gofakes3 (in memory) behind a verifier of
// AWS Signature Version 4. Unlike gofakes3 alone, it refuses what S3
// refuses to a private bucket: anonymous requests, wrong signatures (any
// change to a signed URL), unknown access keys and expired presigned URLs
// are answered 403. It checks signatures, not payload hashes.
//
// Addressing is path style only (http://host/bucket/key): configure the
// clients with UsePathStyle (s3blob.Config.PathStyle).
//
// [Server.Sweep] stands in for a bucket's lifecycle rule: it deletes the
// objects older than Config.Expiration.
package s3local

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Defaults of [Config].
const (
	DefaultAccessKeyID     = "local"
	DefaultSecretAccessKey = "local"
	DefaultExpiration      = 24 * time.Hour
)

// Config configures [New].
type Config struct {
	// AccessKeyID and SecretAccessKey are the only credentials accepted.
	// Empty means [DefaultAccessKeyID] and [DefaultSecretAccessKey].
	AccessKeyID     string
	SecretAccessKey string
	// Buckets are created by New.
	Buckets []string
	// Expiration is the age at which [Server.Sweep] deletes an object,
	// as a lifecycle rule's expiration would. Zero means
	// [DefaultExpiration].
	Expiration time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Server is the S3-compatible [http.Handler]. Serve it on a loopback
// listener (httptest.NewServer, or an http.Server).
type Server struct {
	cfg     Config
	backend *s3mem.Backend
	s3      http.Handler
}

// New returns a server with cfg's buckets, empty.
func New(cfg Config) (*Server, error) {
	if cfg.AccessKeyID == "" {
		cfg.AccessKeyID = DefaultAccessKeyID
	}
	if cfg.SecretAccessKey == "" {
		cfg.SecretAccessKey = DefaultSecretAccessKey
	}
	if cfg.Expiration == 0 {
		cfg.Expiration = DefaultExpiration
	}
	if cfg.Expiration < 0 {
		return nil, fmt.Errorf("s3local: Config.Expiration %s is negative", cfg.Expiration)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	clock := timeSource{cfg.Now}
	backend := s3mem.New(s3mem.WithTimeSource(clock))
	for _, b := range cfg.Buckets {
		if err := gofakes3.ValidateBucketName(b); err != nil {
			return nil, fmt.Errorf("s3local: bucket %q: %w", b, err)
		}
		if err := backend.CreateBucket(b); err != nil {
			return nil, fmt.Errorf("s3local: bucket %q: %w", b, err)
		}
	}
	// The verifier checks the request's time; gofakes3's own check would
	// refuse presigned URLs' old X-Amz-Date.
	fake := gofakes3.New(backend, gofakes3.WithTimeSource(clock), gofakes3.WithTimeSkewLimit(0))
	return &Server{cfg: cfg, backend: backend, s3: fake.Server()}, nil
}

// timeSource adapts a clock to gofakes3.
type timeSource struct{ now func() time.Time }

func (t timeSource) Now() time.Time                   { return t.now() }
func (t timeSource) Since(at time.Time) time.Duration { return t.now().Sub(at) }

// ServeHTTP verifies the request's signature, in its Authorization header
// or its query (a presigned URL), and serves it; a request that fails is
// answered 403 with an S3 error document.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := s.verify(r); err != nil {
		code := "AccessDenied"
		var ve *verifyError
		if errors.As(err, &ve) {
			code = ve.code
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		_ = xml.NewEncoder(w).Encode(struct {
			XMLName xml.Name `xml:"Error"`
			Code    string
			Message string
		}{Code: code, Message: err.Error()})
		return
	}
	s.s3.ServeHTTP(w, r)
}

// verifyError is a refused request, with S3's error code.
type verifyError struct{ code, msg string }

func (e *verifyError) Error() string { return e.msg }

func denied(code, format string, args ...any) error {
	return &verifyError{code: code, msg: fmt.Sprintf(format, args...)}
}

const (
	algorithm    = "AWS4-HMAC-SHA256"
	amzDate      = "20060102T150405Z"
	maxSkew      = 15 * time.Minute
	maxPresigned = 7 * 24 * time.Hour
)

// verify checks r's SigV4 signature and time.
func (s *Server) verify(r *http.Request) error {
	q := r.URL.Query()
	var (
		credential, signedHeaders, signature, date, payloadHash string
		presigned                                               bool
	)
	if q.Has("X-Amz-Signature") {
		presigned = true
		if q.Get("X-Amz-Algorithm") != algorithm {
			return denied("AuthorizationQueryParametersError", "X-Amz-Algorithm must be %s", algorithm)
		}
		credential, signedHeaders, signature, date = q.Get("X-Amz-Credential"), q.Get("X-Amz-SignedHeaders"), q.Get("X-Amz-Signature"), q.Get("X-Amz-Date")
		payloadHash = "UNSIGNED-PAYLOAD"
		if h := q.Get("X-Amz-Content-Sha256"); h != "" {
			payloadHash = h
		}
	} else {
		auth := r.Header.Get("Authorization")
		if auth == "" {
			return denied("AccessDenied", "anonymous access is refused: sign the request")
		}
		rest, ok := strings.CutPrefix(auth, algorithm+" ")
		if !ok {
			return denied("AccessDenied", "only %s signatures are accepted", algorithm)
		}
		for part := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch k {
			case "Credential":
				credential = v
			case "SignedHeaders":
				signedHeaders = v
			case "Signature":
				signature = v
			}
		}
		date = r.Header.Get("X-Amz-Date")
		payloadHash = r.Header.Get("X-Amz-Content-Sha256")
		if payloadHash == "" {
			return denied("InvalidRequest", "missing x-amz-content-sha256")
		}
	}
	at, err := time.Parse(amzDate, date)
	if err != nil {
		return denied("AccessDenied", "bad X-Amz-Date %q", date)
	}
	scope := strings.Split(credential, "/")
	if len(scope) != 5 || scope[4] != "aws4_request" || scope[3] != "s3" || scope[1] != date[:8] {
		return denied("AuthorizationHeaderMalformed", "bad credential scope %q", credential)
	}
	if scope[0] != s.cfg.AccessKeyID {
		return denied("InvalidAccessKeyId", "unknown access key %q", scope[0])
	}
	now := s.cfg.Now()
	if presigned {
		secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
		if err != nil || secs < 1 || time.Duration(secs)*time.Second > maxPresigned {
			return denied("AuthorizationQueryParametersError", "X-Amz-Expires must be 1 to %d seconds", int(maxPresigned/time.Second))
		}
		if at.Sub(now) > maxSkew {
			return denied("AccessDenied", "request is not valid yet")
		}
		if !now.Before(at.Add(time.Duration(secs) * time.Second)) {
			return denied("AccessDenied", "request has expired")
		}
	} else if d := now.Sub(at); d > maxSkew || d < -maxSkew {
		return denied("RequestTimeTooSkewed", "the request time %s is too far from the server's %s", at, now.UTC())
	}
	canonical, err := canonicalRequest(r, signedHeaders, payloadHash)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(canonical))
	toSign := algorithm + "\n" + date + "\n" + strings.Join(scope[1:], "/") + "\n" + hex.EncodeToString(sum[:])
	key := hmacSHA256([]byte("AWS4"+s.cfg.SecretAccessKey), scope[1])
	for _, part := range scope[2:] {
		key = hmacSHA256(key, part)
	}
	want := hex.EncodeToString(hmacSHA256(key, toSign))
	if !hmac.Equal([]byte(want), []byte(signature)) {
		return denied("SignatureDoesNotMatch", "the request signature does not match")
	}
	return nil
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// canonicalRequest builds SigV4's canonical request of r.
func canonicalRequest(r *http.Request, signedHeaders, payloadHash string) (string, error) {
	names := strings.Split(signedHeaders, ";")
	if signedHeaders == "" || !sort.StringsAreSorted(names) {
		return "", denied("AccessDenied", "bad signed headers %q", signedHeaders)
	}
	hasHost := false
	var headers strings.Builder
	for _, name := range names {
		if name != strings.ToLower(name) || name == "" {
			return "", denied("AccessDenied", "bad signed header %q", name)
		}
		var value string
		switch name {
		case "host":
			hasHost, value = true, r.Host
		case "content-length":
			value = strconv.FormatInt(r.ContentLength, 10)
		default:
			vals, ok := r.Header[http.CanonicalHeaderKey(name)]
			if !ok {
				return "", denied("AccessDenied", "signed header %q is missing", name)
			}
			trimmed := make([]string, len(vals))
			for i, v := range vals {
				trimmed[i] = strings.Join(strings.Fields(v), " ")
			}
			value = strings.Join(trimmed, ",")
		}
		headers.WriteString(name + ":" + value + "\n")
	}
	if !hasHost {
		return "", denied("AccessDenied", "the host header must be signed")
	}
	// The path as sent, already escaped once (S3 does not escape it again).
	path, _, _ := strings.Cut(r.RequestURI, "?")
	if path == "" || path[0] != '/' {
		path = r.URL.EscapedPath()
	}
	params := r.URL.Query()
	params.Del("X-Amz-Signature")
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var query []string
	for _, k := range keys {
		vals := append([]string(nil), params[k]...)
		sort.Strings(vals)
		for _, v := range vals {
			query = append(query, uriEncode(k)+"="+uriEncode(v))
		}
	}
	return r.Method + "\n" + path + "\n" + strings.Join(query, "&") + "\n" +
		headers.String() + "\n" + signedHeaders + "\n" + payloadHash, nil
}

// uriEncode escapes s as SigV4 does: everything but A-Z, a-z, 0-9, '-',
// '.', '_' and '~', as %XX in upper case.
func uriEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// Sweep deletes the objects of every bucket older than Config.Expiration,
// as a lifecycle rule would, and returns how many it deleted.
func (s *Server) Sweep(ctx context.Context) (int, error) {
	buckets, err := s.backend.ListBuckets()
	if err != nil {
		return 0, fmt.Errorf("s3local: sweep: %w", err)
	}
	cutoff := s.cfg.Now().Add(-s.cfg.Expiration)
	removed := 0
	for _, b := range buckets {
		list, err := s.backend.ListBucket(b.Name, nil, gofakes3.ListBucketPage{})
		if err != nil {
			return removed, fmt.Errorf("s3local: sweep %s: %w", b.Name, err)
		}
		for _, c := range list.Contents {
			if err := ctx.Err(); err != nil {
				return removed, err
			}
			if c.LastModified.After(cutoff) {
				continue
			}
			if _, err := s.backend.DeleteObject(b.Name, c.Key); err != nil {
				return removed, fmt.Errorf("s3local: sweep %s/%s: %w", b.Name, c.Key, err)
			}
			removed++
		}
	}
	return removed, nil
}

// RunSweeper calls [Server.Sweep] every interval (zero means an hour)
// until ctx is done, passing its errors to onError when not nil.
func (s *Server) RunSweeper(ctx context.Context, interval time.Duration, onError func(error)) {
	if interval <= 0 {
		interval = time.Hour
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.Sweep(ctx); err != nil && onError != nil && ctx.Err() == nil {
			onError(err)
		}
	}
}
