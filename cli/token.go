package cli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

func runToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", "", "subject (required): the principal the token names")
	tenant := fs.String("tenant", "", "tenant_id claim")
	scope := fs.String("scope", "", `space-separated scopes, e.g. "reports:read reports:write"`)
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token")
	dataDir := fs.String("data-dir", devserver.DefaultDataDir, "data dir of `streamer dev`, whose jwt-secret is used when $STREAMER_JWT_SECRET is unset")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", pos[0])}
	}
	if *sub == "" {
		return usageError{"--sub is required"}
	}
	if *ttl <= 0 {
		return usageError{"--ttl must be positive"}
	}
	secret, _, err := secretFor(*dataDir)
	if err != nil {
		return err
	}
	if secret == nil {
		return fmt.Errorf("no secret: STREAMER_JWT_SECRET is not set and %s does not exist; export the secret the server uses, or point --data-dir at the data dir of `streamer dev`",
			filepath.Join(*dataDir, secretFileName))
	}
	tok, err := middleware.SignHS256(secret, middleware.Claims{
		Subject: *sub, Tenant: *tenant, Scopes: strings.Fields(*scope), TTL: *ttl,
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// minSecret is the shortest HS256 secret accepted.
const minSecret = 32

// secretFromEnv reads STREAMER_JWT_SECRET; nil when unset.
func secretFromEnv() ([]byte, error) {
	s, ok := os.LookupEnv("STREAMER_JWT_SECRET")
	if !ok || s == "" {
		return nil, nil
	}
	if len(s) < minSecret {
		return nil, fmt.Errorf("STREAMER_JWT_SECRET is %d bytes; it must be at least %d", len(s), minSecret)
	}
	return []byte(s), nil
}
