package middleware

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Defaults of the JWKS settings of [JWTConfig].
const (
	// DefaultJWKSTTL is how long fetched keys are used before the key set
	// is fetched again.
	DefaultJWKSTTL = 10 * time.Minute
	// DefaultJWKSMinRefetch is the least time between two fetches of the
	// key set: a token whose kid is unknown triggers a fetch only when the
	// last one is at least this old, so a flood of such tokens costs at
	// most one fetch per interval.
	DefaultJWKSMinRefetch = 30 * time.Second
	// jwksMaxBody bounds the key set document.
	jwksMaxBody = 1 << 20
	// jwksTimeout bounds one fetch of the key set.
	jwksTimeout = 10 * time.Second
	// minRSABits is the smallest RSA modulus accepted from a key set.
	minRSABits = 2048
)

// jwk is one verification key of a key set.
type jwk struct {
	key crypto.PublicKey
	// alg is the key's "alg" member; when set, tokens must use it.
	alg string
}

// jwks is a key set fetched from a URL and cached: refreshed after its
// TTL, and refetched (at most once per minRefetch) when a token names a
// kid it lacks. Concurrent callers share one fetch.
type jwks struct {
	url        string
	client     *http.Client
	ttl        time.Duration
	minRefetch time.Duration
	now        func() time.Time

	mu          sync.Mutex
	keys        map[string]jwk
	fetchedAt   time.Time     // of the keys held; zero before the first success
	lastAttempt time.Time     // of the last fetch, successful or not
	inflight    chan struct{} // closed when the fetch in progress ends
	lastErr     error
}

// validJWKSURL accepts https URLs, and http ones on a loopback host (a
// test's server, or a sidecar).
func validJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch {
	case u.Host == "":
		return errors.New("no host")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return errors.New("http is allowed only on a loopback host; use https")
	default:
		return fmt.Errorf("scheme %q; want https", u.Scheme)
	}
}

// key returns the key named kid ("" for a token without kid, which uses
// the set's only key), fetching the set when it is stale or lacks kid and
// the rate limit allows.
func (s *jwks) key(ctx context.Context, kid string) (jwk, error) {
	waited := false
	for {
		s.mu.Lock()
		now := s.now()
		k, ok := s.lookup(kid)
		fresh := !s.fetchedAt.IsZero() && now.Before(s.fetchedAt.Add(s.ttl))
		if ok && fresh {
			s.mu.Unlock()
			return k, nil
		}
		if wait := s.inflight; wait != nil {
			s.mu.Unlock()
			select {
			case <-wait:
				waited = true
				continue
			case <-ctx.Done():
				return jwk{}, fmt.Errorf("%w: waiting for the key set: %w", errNoKey, ctx.Err())
			}
		}
		limited := !s.lastAttempt.IsZero() && now.Before(s.lastAttempt.Add(s.minRefetch))
		if waited || limited {
			err := s.lastErr
			s.mu.Unlock()
			if ok {
				// stale, but a fetch failed or is not due: keep using it
				return k, nil
			}
			if err != nil {
				return jwk{}, fmt.Errorf("%w: kid %q: the key set could not be fetched: %w", errNoKey, kid, err)
			}
			return jwk{}, fmt.Errorf("%w: unknown kid %q", errNoKey, kid)
		}
		s.lastAttempt = now
		done := make(chan struct{})
		s.inflight = done
		s.mu.Unlock()

		// The fetch serves every waiting caller: it must not end with the
		// caller that started it (a client that hangs up at once would
		// otherwise refuse the others' new kid until the next fetch).
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksTimeout)
		keys, err := s.fetch(fctx)
		cancel()

		s.mu.Lock()
		if err == nil {
			s.keys, s.fetchedAt = keys, s.now()
		}
		s.lastErr = err
		s.inflight = nil
		close(done)
		s.mu.Unlock()
		waited = true
	}
}

// lookup finds kid in the held keys; s.mu is held.
func (s *jwks) lookup(kid string) (jwk, bool) {
	if kid == "" {
		if len(s.keys) != 1 {
			return jwk{}, false
		}
		for _, k := range s.keys {
			return k, true
		}
	}
	k, ok := s.keys[kid]
	return k, ok
}

// fetch reads and parses the key set.
func (s *jwks) fetch(ctx context.Context) (map[string]jwk, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", s.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", s.url, err)
	}
	if len(body) > jwksMaxBody {
		return nil, fmt.Errorf("GET %s: the key set is larger than %d bytes", s.url, jwksMaxBody)
	}
	return parseJWKS(body)
}

// jwkJSON is a JSON Web Key's members this package reads (RFC 7517, 7518
// and 8037).
type jwkJSON struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS parses a JSON Web Key Set (RFC 7517) into verification keys by
// kid: RSA keys of at least 2048 bits, EC keys on P-256, P-384 and P-521,
// and Ed25519 (OKP) keys. Keys for encryption ("use": "enc"), of other
// types, or malformed are skipped; a set with no usable key, or two keys
// with one kid, is an error. A key's "alg", when present, is the only
// algorithm tokens may use with it.
func parseJWKS(data []byte) (map[string]jwk, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a JWK set: %w", err)
	}
	keys := make(map[string]jwk, len(doc.Keys))
	var skipped []error
	for i, raw := range doc.Keys {
		var j jwkJSON
		if err := json.Unmarshal(raw, &j); err != nil {
			skipped = append(skipped, fmt.Errorf("key %d: %w", i, err))
			continue
		}
		if j.Use != "" && j.Use != "sig" {
			continue
		}
		k, err := parseJWK(&j)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key %d (kid %q): %w", i, j.Kid, err))
			continue
		}
		if _, dup := keys[j.Kid]; dup {
			return nil, fmt.Errorf("two keys have kid %q", j.Kid)
		}
		keys[j.Kid] = jwk{key: k, alg: j.Alg}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no usable signing key in the JWK set: %w", errors.Join(skipped...))
	}
	return keys, nil
}

func parseJWK(j *jwkJSON) (crypto.PublicKey, error) {
	b64 := base64.RawURLEncoding
	switch j.Kty {
	case "RSA":
		n, err1 := b64.DecodeString(j.N)
		e, err2 := b64.DecodeString(j.E)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("RSA n or e: %w", err)
		}
		if len(e) == 0 || len(e) > 4 {
			return nil, errors.New("RSA exponent out of range")
		}
		exp := int(new(big.Int).SetBytes(e).Int64())
		mod := new(big.Int).SetBytes(n)
		if exp < 3 || exp%2 == 0 {
			return nil, errors.New("RSA exponent out of range")
		}
		if mod.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits; at least %d are required", mod.BitLen(), minRSABits)
		}
		return &rsa.PublicKey{N: mod, E: exp}, nil
	case "EC":
		var curve elliptic.Curve
		switch j.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("EC curve %q", j.Crv)
		}
		x, err1 := b64.DecodeString(j.X)
		y, err2 := b64.DecodeString(j.Y)
		size := (curve.Params().BitSize + 7) / 8
		if err := errors.Join(err1, err2); err != nil || len(x) != size || len(y) != size {
			return nil, errors.New("EC x or y malformed")
		}
		point := append(append([]byte{4}, x...), y...)
		k, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, fmt.Errorf("EC point: %w", err)
		}
		return k, nil
	case "OKP":
		if j.Crv != "Ed25519" {
			return nil, fmt.Errorf("OKP curve %q", j.Crv)
		}
		x, err := b64.DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("Ed25519 x malformed")
		}
		return ed25519.PublicKey(x), nil
	default:
		return nil, fmt.Errorf("key type %q", j.Kty)
	}
}
