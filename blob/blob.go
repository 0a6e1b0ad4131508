// Package blob is object storage for large outputs: reports, exports, files
// a handler produces that are too big for an event or a result. A handler
// stores the bytes with [Store.Put] and hands the client an expiring,
// signed download URL from [Store.URL] instead of the bytes.
//
// Two backends implement [Store]: blob/localblob, a directory served by the
// dev server with HMAC-signed URLs, and blob/s3blob, an S3 bucket with
// presigned URLs. Both pass the conformance suite blob/blobtest.
//
// Keys are relative, slash-separated paths such as "reports/r-42.csv": one
// or more segments of ASCII letters, digits, '.', '_' and '-', none empty,
// none starting with '.', none longer than [MaxSegmentLen], at most
// [MaxKeyLen] bytes in all (see [CheckKey]).
// Anything else is refused with [ErrInvalidKey] rather than escaped, so a key
// means the same file or object in every backend and can never leave its
// directory.
//
// Every object expires: [PutOptions.ExpiresAt] says when the store may
// delete it (the local backend sweeps expired files, an S3 bucket has a
// lifecycle rule), and a URL never outlives the object it points at when
// both are given the same time, as a request's retention.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"time"
)

// Store keeps objects under keys and hands out expiring download URLs.
// Implementations are safe for concurrent use.
type Store interface {
	// Put stores the bytes read from body under key, replacing any object
	// there. The object is complete and visible only once Put returned
	// nil; on error nothing is stored. Put fails with [ErrInvalidKey],
	// [ErrTooLarge], [ErrInvalidContentType] or [ErrInvalidExpiry] (all
	// checked before anything is stored), or with the backend's error.
	Put(ctx context.Context, key string, body io.Reader, opts PutOptions) error
	// URL returns a URL with which anyone holding it can GET the object
	// under key until expiresAt, and nobody after it (403). The URL is
	// signed: any change to it is refused with 403. A URL of a key that
	// holds no object answers 404. URL does not check that the object
	// exists. expiresAt must be in the future and at most [MaxURLTTL]
	// ahead, else [ErrInvalidExpiry]; a bad key is [ErrInvalidKey].
	URL(ctx context.Context, key string, expiresAt time.Time) (string, error)
}

// PutOptions describe an object being stored.
type PutOptions struct {
	// ContentType is the object's media type, sent back when it is
	// downloaded. Empty means "application/octet-stream"; anything that
	// is not a media type is [ErrInvalidContentType].
	ContentType string
	// ExpiresAt is when the store may delete the object. Zero means
	// [DefaultTTL] from now; a time in the past is [ErrInvalidExpiry].
	ExpiresAt time.Time
}

// Limits and defaults shared by the backends.
const (
	// MaxKeyLen is the longest key, in bytes.
	MaxKeyLen = 512
	// MaxSegmentLen is the longest segment of a key (a file name in the
	// local backend), in bytes.
	MaxSegmentLen = 200
	// DefaultMaxSize is a backend's size limit when its Config leaves it
	// zero: 1 GiB.
	DefaultMaxSize = 1 << 30
	// DefaultTTL is how long an object is kept when PutOptions.ExpiresAt is
	// zero: 24 hours, a request's default retention.
	DefaultTTL = 24 * time.Hour
	// MaxURLTTL is how far ahead a URL may expire: 7 days, the longest
	// an S3 presigned URL can last.
	MaxURLTTL = 7 * 24 * time.Hour
	// DefaultContentType is the content type of objects stored without
	// one.
	DefaultContentType = "application/octet-stream"
)

// Errors of the backends, to test for with errors.Is.
var (
	// ErrInvalidKey is returned for a key outside the rules of [CheckKey].
	ErrInvalidKey = errors.New("blob: invalid key")
	// ErrTooLarge is returned by Put when the body is larger than the
	// backend's MaxSize. Nothing is stored.
	ErrTooLarge = errors.New("blob: object too large")
	// ErrInvalidContentType is returned by Put for a content type that does
	// not parse as a media type.
	ErrInvalidContentType = errors.New("blob: invalid content type")
	// ErrInvalidExpiry is returned for an expiry in the past, or a URL
	// expiry more than [MaxURLTTL] ahead.
	ErrInvalidExpiry = errors.New("blob: invalid expiry")
)

// CheckKey returns nil when key is valid, else an error wrapping
// [ErrInvalidKey] that says why. A valid key is at most [MaxKeyLen] bytes
// of segments separated by single slashes; each segment is 1 to
// [MaxSegmentLen] bytes of ASCII letters, digits, '.', '_' and '-', and
// does not start with '.' (so no "..", no hidden files, no leading or
// trailing slash).
func CheckKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidKey, len(key), MaxKeyLen)
	}
	segStart, segLen := true, 0
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '/':
			if segStart {
				return fmt.Errorf("%w: %q has an empty segment", ErrInvalidKey, key)
			}
			segStart, segLen = true, 0
			continue
		case c == '.':
			if segStart {
				return fmt.Errorf("%w: %q has a segment starting with '.'", ErrInvalidKey, key)
			}
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return fmt.Errorf("%w: %q has the character %q", ErrInvalidKey, key, rune(c))
		}
		segStart = false
		if segLen++; segLen > MaxSegmentLen {
			return fmt.Errorf("%w: a segment of %q is more than %d bytes", ErrInvalidKey, key, MaxSegmentLen)
		}
	}
	if segStart {
		return fmt.Errorf("%w: %q ends with a slash", ErrInvalidKey, key)
	}
	return nil
}

// Normalize checks opts as Put does and fills in its defaults relative to
// now: the default content type and expiry. Backends call it first thing
// in Put.
func (o PutOptions) Normalize(now time.Time) (PutOptions, error) {
	if o.ContentType == "" {
		o.ContentType = DefaultContentType
	} else if _, _, err := mime.ParseMediaType(o.ContentType); err != nil {
		return o, fmt.Errorf("%w: %q: %w", ErrInvalidContentType, o.ContentType, err)
	}
	switch {
	case o.ExpiresAt.IsZero():
		o.ExpiresAt = now.Add(DefaultTTL)
	case !o.ExpiresAt.After(now):
		return o, fmt.Errorf("%w: the object would expire at %s, not after now (%s)", ErrInvalidExpiry,
			o.ExpiresAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return o, nil
}

// CheckURLExpiry returns nil when a URL may expire at expiresAt: after now
// and at most [MaxURLTTL] later. Otherwise the error wraps
// [ErrInvalidExpiry].
func CheckURLExpiry(now, expiresAt time.Time) error {
	switch {
	case !expiresAt.After(now):
		return fmt.Errorf("%w: the URL would expire at %s, not after now (%s)", ErrInvalidExpiry,
			expiresAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case expiresAt.Sub(now) > MaxURLTTL:
		return fmt.Errorf("%w: the URL would expire in %s, more than %s", ErrInvalidExpiry,
			expiresAt.Sub(now).Round(time.Second), MaxURLTTL)
	}
	return nil
}
