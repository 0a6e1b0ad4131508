// Package localblob is a [blob.Store] in a local directory, for the dev
// server: the Store is also the [http.Handler] that serves the files, and
// its URLs are signed and expiring, as S3's presigned URLs are. A URL is
//
//	<BaseURL><key>?expires=<unix seconds>&sig=<HMAC-SHA256 of key and expires>
//
// keyed with a secret of the directory's own (Config.Secret, or a file
// ".secret" in the directory, created on first use). Without a valid
// signature, or after expires, a download is refused with 403; a key that
// holds no object (or only an expired one) answers 404.
//
// Each file holds one line of JSON metadata (content type and expiry)
// before the object's bytes. Files are written to a temporary file and
// renamed into place, and every path is opened through an [os.Root], so no
// key can reach outside the directory. A key is a path of the directory, so
// one key cannot be both an object and a folder of others ("a" and "a/b"):
// the second Put fails. [Store.Sweep] deletes expired
// objects; [Store.RunSweeper] runs it periodically.
package localblob

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/streamer-go/streamer/blob"
)

// SecretFile is the name of the file in Config.Dir that keeps the signing
// secret when Config.Secret is nil.
const SecretFile = ".secret"

// DefaultSweepInterval is how often [Store.RunSweeper] sweeps when given no
// interval.
const DefaultSweepInterval = 10 * time.Minute

// Config configures [New].
type Config struct {
	// Dir is the directory of the objects; required. New creates it.
	Dir string
	// BaseURL is where the Store is served, as the prefix of its URLs,
	// such as "http://127.0.0.1:8080/blobs/"; required, absolute, ending
	// with a slash. Mount the Store there with [http.StripPrefix] so that
	// it sees "/<key>".
	BaseURL string
	// Secret signs the URLs; at least 32 bytes. Nil means the secret kept
	// in Dir/.secret ([SecretFile]), made of 32 random bytes when the file
	// does not exist yet: URLs then stay valid across restarts on the
	// same directory, and no other directory's URL is valid here.
	Secret []byte
	// MaxSize is the largest object Put accepts, in bytes. Zero means
	// [blob.DefaultMaxSize].
	MaxSize int64
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Store is a [blob.Store] in a directory, and the [http.Handler] serving
// it. It is safe for concurrent use.
type Store struct {
	dir     string
	baseURL string
	secret  []byte
	maxSize int64
	now     func() time.Time
}

var _ blob.Store = (*Store)(nil)

// New returns the Store of cfg, creating Dir (and its secret) when
// missing.
func New(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("localblob: Config.Dir is required")
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || !u.IsAbs() || u.Host == "" || !strings.HasSuffix(u.Path, "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("localblob: Config.BaseURL %q: want an absolute http(s) URL ending with a slash, such as http://127.0.0.1:8080/blobs/", cfg.BaseURL)
	}
	if cfg.MaxSize < 0 {
		return nil, fmt.Errorf("localblob: Config.MaxSize %d is negative", cfg.MaxSize)
	}
	s := &Store{dir: cfg.Dir, baseURL: cfg.BaseURL, maxSize: cfg.MaxSize, now: cfg.Now, secret: cfg.Secret}
	if s.maxSize == 0 {
		s.maxSize = blob.DefaultMaxSize
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("localblob: %w", err)
	}
	if s.secret == nil {
		if s.secret, err = loadSecret(cfg.Dir); err != nil {
			return nil, err
		}
	}
	if len(s.secret) < 32 {
		return nil, fmt.Errorf("localblob: the secret is %d bytes; it must be at least 32", len(s.secret))
	}
	return s, nil
}

// loadSecret reads dir's secret, creating it when missing.
func loadSecret(dir string) ([]byte, error) {
	file := filepath.Join(dir, SecretFile)
	data, err := os.ReadFile(file)
	if err == nil {
		secret, derr := hex.DecodeString(strings.TrimSpace(string(data)))
		if derr != nil || len(secret) < 32 {
			return nil, fmt.Errorf("localblob: %s is not 32 or more hex-encoded bytes; delete it to make a new secret (outstanding URLs become invalid)", file)
		}
		return secret, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("localblob: %w", err)
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret) // crypto/rand.Read never fails
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return loadSecret(dir) // another process made it first
	}
	if err != nil {
		return nil, fmt.Errorf("localblob: %w", err)
	}
	_, werr := f.WriteString(hex.EncodeToString(secret) + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(file)
		return nil, fmt.Errorf("localblob: writing %s: %w", file, werr)
	}
	return secret, nil
}

// meta is the first line of each file.
type meta struct {
	ContentType string    `json:"content_type"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// maxMetaLen bounds the metadata line.
const maxMetaLen = 4096

// tmpPrefix starts the names of files being written; keys cannot start a
// segment with '.', so no key names one.
const tmpPrefix = ".tmp-"

// Put stores body under key; see [blob.Store]. The file is written to a
// temporary file next to its final place, synced, and renamed.
func (s *Store) Put(ctx context.Context, key string, body io.Reader, opts blob.PutOptions) error {
	if err := blob.CheckKey(key); err != nil {
		return err
	}
	opts, err := opts.Normalize(s.now())
	if err != nil {
		return err
	}
	header, err := json.Marshal(meta{ContentType: opts.ContentType, ExpiresAt: opts.ExpiresAt.UTC()})
	if err != nil {
		return fmt.Errorf("localblob: %w", err)
	}
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		return fmt.Errorf("localblob: %w", err)
	}
	defer func() { _ = root.Close() }()
	dir := path.Dir(key)
	if dir != "." {
		if err := root.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("localblob: put %s: %w", key, err)
		}
	}
	var r [8]byte
	_, _ = rand.Read(r[:])
	tmp := path.Join(dir, tmpPrefix+hex.EncodeToString(r[:]))
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("localblob: put %s: %w", key, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = root.Remove(tmp)
		}
	}()
	w := bufio.NewWriter(f)
	_, _ = w.Write(header)
	_ = w.WriteByte('\n')
	n, err := io.Copy(w, io.LimitReader(ctxReader{ctx, body}, s.maxSize+1))
	if err != nil {
		return fmt.Errorf("localblob: put %s: %w", key, err)
	}
	if n > s.maxSize {
		return fmt.Errorf("%w: %s is more than %d bytes", blob.ErrTooLarge, key, s.maxSize)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("localblob: put %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("localblob: put %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("localblob: put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("localblob: put %s: %w", key, err)
	}
	if err := root.Rename(tmp, key); err != nil {
		return fmt.Errorf("localblob: put %s: %w", key, err)
	}
	ok = true
	return nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// URL returns the signed URL of key, valid until expiresAt (to the
// second); see [blob.Store].
func (s *Store) URL(_ context.Context, key string, expiresAt time.Time) (string, error) {
	if err := blob.CheckKey(key); err != nil {
		return "", err
	}
	if err := blob.CheckURLExpiry(s.now(), expiresAt); err != nil {
		return "", err
	}
	exp := strconv.FormatInt(expiresAt.Unix(), 10)
	// Keys hold only unreserved characters: no escaping is needed.
	return s.baseURL + key + "?expires=" + exp + "&sig=" + s.sign(key, exp), nil
}

// sign is the signature of key until exp (unix seconds, in decimal).
func (s *Store) sign(key, exp string) string {
	m := hmac.New(sha256.New, s.secret)
	_, _ = io.WriteString(m, "streamer-blob-v1\n"+key+"\n"+exp)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// ServeHTTP serves the object of a signed URL. The request path is
// "/<key>" (mount the Store with [http.StripPrefix]). Only GET and HEAD
// are allowed (405). A bad key or a missing object is 404; a missing,
// wrong or expired signature, or any other query parameter, is 403 (checked before the object is looked
// up, so an unsigned request learns nothing). Objects are served with
// their content type, as private, not to be stored by caches, with range
// and conditional requests.
func (s *Store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	key, ok := strings.CutPrefix(r.URL.Path, "/")
	if !ok || blob.CheckKey(key) != nil {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	exp, sig := q.Get("expires"), q.Get("sig")
	if len(q) != 2 || len(q["expires"]) != 1 || len(q["sig"]) != 1 ||
		!hmac.Equal([]byte(sig), []byte(s.sign(key, exp))) {
		http.Error(w, "forbidden: invalid signature", http.StatusForbidden)
		return
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || !s.now().Before(time.Unix(unix, 0)) {
		http.Error(w, "forbidden: the URL has expired", http.StatusForbidden)
		return
	}
	s.serve(w, r, key)
}

// serve serves the object under key, 404 when there is none.
func (s *Store) serve(w http.ResponseWriter, r *http.Request, key string) {
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		http.Error(w, "cannot read object", http.StatusInternalServerError)
		return
	}
	defer func() { _ = root.Close() }()
	f, err := root.Open(key)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	m, offset, err := readMeta(f)
	if err != nil || !s.now().Before(m.ExpiresAt) {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", m.ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "private, no-store")
	http.ServeContent(w, r, "", st.ModTime(), io.NewSectionReader(f, offset, st.Size()-offset))
}

// readMeta reads the metadata line at the start of f and returns it with
// the offset of the object's bytes.
func readMeta(f io.ReaderAt) (meta, int64, error) {
	buf := make([]byte, maxMetaLen)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return meta{}, 0, err
	}
	line, _, found := strings.Cut(string(buf[:n]), "\n")
	if !found {
		return meta{}, 0, errors.New("localblob: no metadata line")
	}
	var m meta
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		return meta{}, 0, fmt.Errorf("localblob: metadata: %w", err)
	}
	if m.ContentType == "" || m.ExpiresAt.IsZero() {
		return meta{}, 0, errors.New("localblob: incomplete metadata")
	}
	return m, int64(len(line)) + 1, nil
}

// staleAfter is how old a temporary file or an empty directory must be
// before Sweep removes it: older than any Put in progress.
const staleAfter = time.Hour

// Sweep deletes the expired objects, files that are not objects
// (unreadable metadata), temporary files older than an hour (a Put that
// crashed) and empty directories older than an hour, and returns how many
// files it deleted. The secret and anything that is not a regular file or
// directory are left alone.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	now := s.now()
	removed := 0
	var dirs []string
	var errs []error
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if p == s.dir {
			return nil
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		if !d.Type().IsRegular() || p == filepath.Join(s.dir, SecretFile) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil //nolint:nilerr // gone since the directory was read
		}
		expired := false
		if strings.HasPrefix(d.Name(), tmpPrefix) {
			expired = now.Sub(info.ModTime()) > staleAfter
		} else if f, err := os.Open(p); err == nil {
			m, _, merr := readMeta(f)
			_ = f.Close()
			expired = merr != nil || !now.Before(m.ExpiresAt)
		}
		if expired {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			} else if err == nil {
				removed++
			}
		}
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("localblob: sweep: %w", err)
	}
	// Deepest first, so a directory emptied by removing its empty
	// subdirectories goes too.
	for i := len(dirs) - 1; i >= 0; i-- {
		if info, err := os.Stat(dirs[i]); err == nil && now.Sub(info.ModTime()) > staleAfter {
			_ = os.Remove(dirs[i]) // fails, as it should, when not empty
		}
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("localblob: sweep: %w", errors.Join(errs...))
	}
	return removed, nil
}

// RunSweeper calls [Store.Sweep] now and then every interval (zero means
// [DefaultSweepInterval]) until ctx is done, passing its errors to onError
// when it is not nil.
func (s *Store) RunSweeper(ctx context.Context, interval time.Duration, onError func(error)) {
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.Sweep(ctx); err != nil && onError != nil && ctx.Err() == nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
