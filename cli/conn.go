package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/streamer-go/streamer/client"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// exitInterrupted is the exit code of a command stopped by Ctrl-C (128 +
// SIGINT, as shells report it).
const exitInterrupted = 130

// connFlags are the flags of the commands that talk to a server (call,
// status, cancel, actions), and how they find a token.
type connFlags struct {
	url     string
	token   string
	dataDir string
	// tokenSource says where the token came from: "flag", "env", "secret"
	// ($STREAMER_JWT_SECRET) or "data-dir".
	tokenSource string
}

// register adds --url, --token and --data-dir to fs.
func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", envOr("STREAMER_URL", defaultWSURL), "WebSocket URL of the server (default $STREAMER_URL)")
	fs.StringVar(&c.token, "token", "", "JWT (default $STREAMER_TOKEN, or one minted with $STREAMER_JWT_SECRET or the secret `streamer dev` keeps in --data-dir)")
	fs.StringVar(&c.dataDir, "data-dir", devserver.DefaultDataDir, "data dir of `streamer dev`, whose jwt-secret mints a token when no other is given")
}

// resolveToken fills in the token when --token was not given: see
// tokenFromEnv.
func (c *connFlags) resolveToken() error {
	if c.token != "" {
		c.tokenSource = "flag"
		return nil
	}
	var err error
	c.token, c.tokenSource, err = tokenFromEnv(c.dataDir)
	return err
}

// connect resolves the token, bounds ctx by timeout and dials, reporting
// a failure on stderr as cmd. On success it returns the bounded context,
// the client and a function that closes both; otherwise cl is nil and code
// is the exit code to return.
func (c *connFlags) connect(ctx context.Context, cmd string, timeout time.Duration, stderr io.Writer) (cctx context.Context, cl *client.Client, done func(), code int) {
	if err := c.resolveToken(); err != nil {
		fmt.Fprintf(stderr, "streamer %s: %v\n", cmd, err)
		return nil, nil, nil, exitUsage
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	cl, code = c.dial(cctx, cmd, stderr)
	if cl == nil {
		cancel()
		return nil, nil, nil, code
	}
	return cctx, cl, func() { _ = cl.Close(); cancel() }, exitOK
}

// dial connects, reporting a failure on stderr as cmd; code is the exit
// code to return when c is nil.
func (c *connFlags) dial(ctx context.Context, cmd string, stderr io.Writer) (cl *client.Client, code int) {
	cl, err := client.Dial(ctx, c.url, client.Options{Token: c.token})
	switch {
	case err == nil:
		return cl, exitOK
	case errors.Is(ctx.Err(), context.Canceled):
		fmt.Fprintf(stderr, "streamer %s: interrupted while connecting to %s\n", cmd, c.url)
		return nil, exitInterrupted
	case errors.Is(err, client.ErrUnauthorized):
		fmt.Fprintf(stderr, "streamer %s: %s refused the token (HTTP 401): check --token, STREAMER_TOKEN or the secret it was minted with\n", cmd, c.url)
		return nil, exitConnect
	default:
		fmt.Fprintf(stderr, "streamer %s: cannot connect to %s: %v\n", cmd, c.url, err)
		return nil, exitConnect
	}
}

// args returns the flags that make another command reach the same server
// the same way: --url and --data-dir when they differ from what the
// command would use by itself. A token given with --token is not repeated.
func (c *connFlags) args() string {
	var b strings.Builder
	if c.url != envOr("STREAMER_URL", defaultWSURL) {
		b.WriteString(" --url " + shellQuote(c.url))
	}
	if c.tokenSource == "data-dir" && c.dataDir != devserver.DefaultDataDir {
		b.WriteString(" --data-dir " + shellQuote(c.dataDir))
	}
	return b.String()
}

// tokenFromEnv returns $STREAMER_TOKEN, or a token for subject "cli" minted
// with the secret that secretFor finds, and where it came from.
func tokenFromEnv(dataDir string) (token, source string, err error) {
	if t := os.Getenv("STREAMER_TOKEN"); t != "" {
		return t, "env", nil
	}
	secret, source, err := secretFor(dataDir)
	if err != nil {
		return "", "", err
	}
	if secret == nil {
		return "", "", fmt.Errorf("no token: pass --token, set STREAMER_TOKEN or STREAMER_JWT_SECRET, or run where `streamer dev` keeps its data dir (no %s; see --data-dir)",
			filepath.Join(dataDir, secretFileName))
	}
	token, err = middleware.SignHS256(secret, middleware.Claims{Subject: "cli", TTL: time.Hour})
	return token, source, err
}

// secretFileName is the file in the data dir where `streamer dev` keeps
// the secret it made (see devserver.Secret).
const secretFileName = "jwt-secret"

// secretFor returns $STREAMER_JWT_SECRET ("secret"), else the secret kept
// in dataDir by `streamer dev` ("data-dir"), else nil. It never makes one.
func secretFor(dataDir string) ([]byte, string, error) {
	s, err := secretFromEnv()
	if err != nil || s != nil {
		return s, "secret", err
	}
	if dataDir == "" {
		return nil, "", nil
	}
	path := filepath.Join(dataDir, secretFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("--data-dir: %w", err)
	}
	if sec := strings.TrimSpace(string(b)); len(sec) >= minSecret {
		return []byte(sec), "data-dir", nil
	}
	return nil, "", fmt.Errorf("%s holds a secret shorter than %d bytes", path, minSecret)
}

// newRequestID makes the id of a request sent by call, so that it can be
// printed when call is interrupted.
func newRequestID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "cli-" + hex.EncodeToString(b[:])
}

// isTTY reports whether w is a terminal.
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	safe := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r)
	}
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return !safe(r) }) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
