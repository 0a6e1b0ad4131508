package middleware

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
)

// ParseJWKSKinds parses a key set as the JWKS fetcher does and returns
// each key's kind ("rsa", "ecdsa", "ed25519"), for tests.
func ParseJWKSKinds(data []byte) (map[string]string, error) {
	keys, err := parseJWKS(data)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(keys))
	for kid, k := range keys {
		switch key := k.key.(type) {
		case *rsa.PublicKey:
			if key.N.BitLen() < minRSABits || key.E < 3 {
				return nil, fmt.Errorf("weak RSA key %q", kid)
			}
			out[kid] = "rsa"
		case *ecdsa.PublicKey:
			out[kid] = "ecdsa"
		case ed25519.PublicKey:
			if len(key) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("bad Ed25519 key %q", kid)
			}
			out[kid] = "ed25519"
		default:
			return nil, fmt.Errorf("key %q is a %T", kid, k.key)
		}
	}
	return out, nil
}
