package main_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// cliResult is what one run of the streamer binary did.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the streamer binary with args and env (added to an
// environment without STREAMER_ variables) in a temporary directory.
func runCLI(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	return runCLIIn(t, t.TempDir(), env, args...)
}

// runCLIIn is runCLI in directory dir.
func runCLIIn(t *testing.T, dir string, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Dir = dir
	cmd.Env = devEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, ctx.Err(), "streamer %v did not end in time; stderr:\n%s", args, stderr.String())
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// callEnv points call at the shared server with the test secret.
func callEnv(s *devServer) []string {
	return []string{"STREAMER_URL=" + s.wsURL, "STREAMER_JWT_SECRET=" + testSecret}
}

func TestCLICall(t *testing.T) {
	t.Parallel()
	s := shared(t)
	env := callEnv(s)

	t.Run("echo prints the JSON", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "call", "echo", `{"a":1}`)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		require.JSONEq(t, `{"a":1}`, res.stdout)
	})

	t.Run("flags after the arguments", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, nil, "call", "echo", `[1,2]`, "--url", s.wsURL, "--token", token(t, uid("cli"), ""))
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		require.JSONEq(t, `[1,2]`, res.stdout)
	})

	t.Run("a failed request exits non-zero with its code", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "call", "fail", `{"code":"BAD_THING","message":"x"}`)
		require.NotEqual(t, 0, res.code)
		require.Contains(t, res.stderr, "BAD_THING")
		require.Empty(t, strings.TrimSpace(res.stdout))
	})

	t.Run("a validation error prints its details", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "call", "delay", `{"ms":1,"steps":0}`)
		require.NotEqual(t, 0, res.code)
		require.Contains(t, res.stderr, "VALIDATION_ERROR")
		require.Contains(t, res.stderr, "steps")
	})

	t.Run("delay prints progress lines then the result", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "call", "delay", `{"ms":600,"steps":3}`)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		require.JSONEq(t, `{"steps":3,"ms":600}`, res.stdout)
		require.NotContains(t, res.stderr, "\r", "no redrawn bar when not a terminal")
		var lines []string
		for l := range strings.Lines(res.stderr) {
			if strings.HasPrefix(l, "progress") {
				lines = append(lines, l)
			}
		}
		require.Len(t, lines, 3, "stderr: %s", res.stderr)
		for i, want := range []string{"step 1/3", "step 2/3", "step 3/3"} {
			require.Contains(t, lines[i], want)
		}
		require.Contains(t, lines[2], "100.0%")
		require.True(t, strings.HasPrefix(res.stderr, "started (attempt 1)\n"), "the lifecycle event comes first: %s", res.stderr)
	})

	t.Run("lifecycle events of a retried request", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "call", "fail", `{"code":"FLAKY_UPSTREAM","message":"try again","succeed_on":3}`)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		require.JSONEq(t, `{"attempt":3}`, res.stdout)
		var life []string
		for l := range strings.Lines(res.stderr) {
			if !strings.HasPrefix(l, "progress") {
				life = append(life, l)
			}
		}
		require.Len(t, life, 5, "stderr: %s", res.stderr)
		require.Equal(t, "started (attempt 1)\n", life[0])
		require.True(t, strings.HasPrefix(life[1], "retrying (attempt 1 failed: FLAKY_UPSTREAM: try again; next at "), life[1])
		require.Equal(t, "started (attempt 2)\n", life[2])
		require.True(t, strings.HasPrefix(life[3], "retrying (attempt 2 failed: FLAKY_UPSTREAM: try again; next at "), life[3])
		require.Equal(t, "started (attempt 3)\n", life[4])
	})

	t.Run("--resume prints a finished job's result", func(t *testing.T) {
		t.Parallel()
		id := uid("cli-resume")
		first := runCLI(t, env, "call", "--id", id, "delay", `{"ms":0,"steps":2}`)
		require.Equal(t, 0, first.code, "stderr: %s", first.stderr)
		res := runCLI(t, env, "call", "--resume", id)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		require.JSONEq(t, `{"steps":2,"ms":0}`, res.stdout)
	})

	t.Run("--resume of an unknown id fails with NOT_FOUND", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "call", "--resume", uid("cli-none"))
		require.NotEqual(t, 0, res.code)
		require.Contains(t, res.stderr, "NOT_FOUND")
	})

	t.Run("invalid JSON is a usage error", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "call", "echo", `{"a":`)
		require.Equal(t, 2, res.code)
		require.Contains(t, res.stderr, "not valid JSON")
	})

	t.Run("no action is a usage error", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "call")
		require.Equal(t, 2, res.code)
		require.Contains(t, res.stderr, "ACTION")
	})

	t.Run("a refused token exits 3", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "call", "--token", "garbage", "echo")
		require.Equal(t, 3, res.code)
		require.Contains(t, res.stderr, "401")
	})
}

func TestCLIToken(t *testing.T) {
	t.Parallel()
	s := shared(t)

	t.Run("mints a token the server accepts", func(t *testing.T) {
		res := runCLI(t, []string{"STREAMER_JWT_SECRET=" + testSecret}, "token", "--sub", "alice", "--scope", "a b")
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		tok := strings.TrimSpace(res.stdout)
		claims := jwt.MapClaims{}
		_, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return []byte(testSecret), nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
		require.NoError(t, err)
		require.Equal(t, "alice", claims["sub"])
		require.Equal(t, "a b", claims["scope"])
		r := dialRaw(t, s, tok)
		require.Empty(t, r.ping())
	})

	t.Run("without --sub is a usage error", func(t *testing.T) {
		res := runCLI(t, []string{"STREAMER_JWT_SECRET=" + testSecret}, "token")
		require.Equal(t, 2, res.code)
		require.Contains(t, res.stderr, "--sub")
	})

	t.Run("without a secret names STREAMER_JWT_SECRET", func(t *testing.T) {
		res := runCLI(t, nil, "token", "--sub", "alice")
		require.NotEqual(t, 0, res.code)
		require.Contains(t, res.stderr, "STREAMER_JWT_SECRET")
	})

	t.Run("a short secret names STREAMER_JWT_SECRET", func(t *testing.T) {
		res := runCLI(t, []string{"STREAMER_JWT_SECRET=short"}, "token", "--sub", "alice")
		require.NotEqual(t, 0, res.code)
		require.Contains(t, res.stderr, "STREAMER_JWT_SECRET")
		require.Empty(t, res.stdout)
	})
}

func TestCLIDevErrors(t *testing.T) {
	t.Parallel()

	t.Run("bad --addr", func(t *testing.T) {
		res := runCLI(t, []string{"STREAMER_JWT_SECRET=" + testSecret}, "dev", "--addr", "bad", "--data-dir", t.TempDir())
		require.NotEqual(t, 0, res.code)
		require.Contains(t, res.stderr, "--addr")
	})

	t.Run("short STREAMER_JWT_SECRET", func(t *testing.T) {
		res := runCLI(t, []string{"STREAMER_JWT_SECRET=too-short"}, "dev", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir())
		require.NotEqual(t, 0, res.code)
		require.Contains(t, res.stderr, "STREAMER_JWT_SECRET")
	})

	t.Run("unexpected argument", func(t *testing.T) {
		res := runCLI(t, nil, "dev", "--data-dir", t.TempDir(), "extra")
		require.Equal(t, 2, res.code)
		require.Contains(t, res.stderr, "extra")
	})
}

func TestCLIUsage(t *testing.T) {
	t.Parallel()

	t.Run("unknown command", func(t *testing.T) {
		res := runCLI(t, nil, "frobnicate")
		require.Equal(t, 2, res.code)
		require.Contains(t, res.stderr, "frobnicate")
	})

	t.Run("no command", func(t *testing.T) {
		res := runCLI(t, nil)
		require.Equal(t, 2, res.code)
		require.Contains(t, res.stderr, "Usage")
	})

	t.Run("help", func(t *testing.T) {
		res := runCLI(t, nil, "help")
		require.Equal(t, 0, res.code)
		require.Contains(t, res.stdout, "streamer dev")
	})
}
