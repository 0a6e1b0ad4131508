package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/client"
)

// pollCLI runs the binary until ok accepts the result, for at most 30
// seconds, and returns the last result.
func pollCLI(t *testing.T, env []string, ok func(cliResult) bool, args ...string) cliResult {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res := runCLI(t, env, args...)
		if ok(res) || time.Now().After(deadline) {
			return res
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// plainFields parses the "field value" lines of status and cancel.
func plainFields(out string) map[string]string {
	m := map[string]string{}
	for l := range strings.Lines(out) {
		k, v, _ := strings.Cut(strings.TrimRight(l, "\n"), " ")
		m[k] = v
	}
	return m
}

func TestCLIActions(t *testing.T) {
	t.Parallel()
	s := shared(t)
	env := callEnv(s)

	t.Run("lists the demo actions with their mode", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "actions")
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
		require.Contains(t, lines, "echo sync")
		require.Contains(t, lines, "delay async")
		require.Contains(t, lines, "fail async")
		require.IsNonDecreasing(t, lines, "sorted by name")
	})

	t.Run("--json", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "actions", "--json")
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		var list []map[string]any
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &list))
		require.Contains(t, list, map[string]any{"name": "echo", "mode": "sync"})
	})

	t.Run("a refused token exits 3", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "actions", "--token", "garbage")
		require.Equal(t, 3, res.code)
		require.Contains(t, res.stderr, "401")
	})

	t.Run("an argument is a usage error", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "actions", "extra")
		require.Equal(t, 2, res.code)
		require.Contains(t, res.stderr, "extra")
	})

	t.Run("call of an unknown action names the available ones", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "call", "nope")
		require.Equal(t, 1, res.code)
		require.Contains(t, res.stderr, "INVALID_ACTION")
		require.Contains(t, res.stderr, "available: ")
		require.Contains(t, res.stderr, "delay")
		require.Contains(t, res.stderr, `"available":[`)
	})
}

func TestCLIStatusAndCancel(t *testing.T) {
	t.Parallel()
	s := shared(t)
	env := callEnv(s)

	t.Run("status of a finished request", func(t *testing.T) {
		t.Parallel()
		id := uid("cli-status")
		first := runCLI(t, env, "call", "--id", id, "delay", `{"ms":0,"steps":2}`)
		require.Equal(t, 0, first.code, "stderr: %s", first.stderr)
		res := runCLI(t, env, "status", id)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		f := plainFields(res.stdout)
		require.Equal(t, id, f["request_id"])
		require.Equal(t, "delay", f["action"])
		require.Equal(t, "succeeded", f["status"])
		require.Equal(t, "4", f["seq"], "started, two steps, complete")
		require.Equal(t, "100", f["percentage"])
		require.JSONEq(t, `{"steps":2,"ms":0}`, f["result"])
		_, err := time.Parse(time.RFC3339Nano, f["created_at"])
		require.NoError(t, err)

		res = runCLI(t, env, "status", "--json", id)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		var st map[string]any
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &st))
		require.Equal(t, "succeeded", st["status"])
		require.Equal(t, map[string]any{"steps": 2.0, "ms": 0.0}, st["result"])
	})

	t.Run("status of an unknown id exits 1 with NOT_FOUND", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "status", uid("cli-none"))
		require.Equal(t, 1, res.code)
		require.Contains(t, res.stderr, "NOT_FOUND")
		require.Empty(t, res.stdout)
	})

	t.Run("cancel of an unknown id exits 1 with NOT_FOUND", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "cancel", uid("cli-none"))
		require.Equal(t, 1, res.code)
		require.Contains(t, res.stderr, "NOT_FOUND")
	})

	t.Run("usage errors exit 2", func(t *testing.T) {
		t.Parallel()
		for _, args := range [][]string{{"status"}, {"cancel"}, {"status", "a", "b"}, {"status", "a", "--timeout", "0s"}} {
			res := runCLI(t, env, args...)
			require.Equal(t, 2, res.code, "%v: %s", args, res.stderr)
		}
	})

	t.Run("a refused token exits 3", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, env, "status", "x", "--token", "garbage")
		require.Equal(t, 3, res.code)
	})

	t.Run("cancel a running request", func(t *testing.T) {
		t.Parallel()
		// The CLI's principal is subject "cli": start the request as it.
		c := dialClient(t, s, token(t, "cli", ""))
		id := uid("cli-cancel")
		running := make(chan struct{}, 1)
		done := make(chan error, 1)
		go func() {
			_, err := c.Request(testCtx(t, time.Minute), "delay", map[string]int{"ms": 120000, "steps": 120},
				client.WithID(id), client.WithProgress(func(client.Progress) {
					select {
					case running <- struct{}{}:
					default:
					}
				}))
			done <- err
		}()
		select {
		case <-running:
		case err := <-done:
			t.Fatalf("the request ended before any progress: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("no progress within 30s")
		}
		res := runCLI(t, env, "cancel", id)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		require.Contains(t, []string{"canceling", "canceled"}, plainFields(res.stdout)["status"])
		select {
		case err := <-done:
			require.Equal(t, "CANCELED", client.CodeOf(err))
		case <-time.After(30 * time.Second):
			t.Fatal("the request did not end within 30s of its cancel")
		}
		res = pollCLI(t, env, func(r cliResult) bool { return plainFields(r.stdout)["status"] == "canceled" }, "status", id)
		f := plainFields(res.stdout)
		require.Equal(t, "canceled", f["status"], "stdout: %s stderr: %s", res.stdout, res.stderr)
		require.Equal(t, "CANCELED: the request was canceled", f["error"])
	})
}

// followUp matches the commands call prints when interrupted.
var followUp = regexp.MustCompile(`(?m)^  status: +(streamer status .+)$`)

func TestCLICallInterrupted(t *testing.T) {
	t.Parallel()
	s := shared(t)
	id := uid("cli-int")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// --url as a flag, not from the environment: the printed commands
	// must repeat it.
	cmd := exec.CommandContext(ctx, binPath, "call", "--url", s.wsURL, "--id", id, "delay", `{"ms":120000,"steps":120}`)
	cmd.Dir = t.TempDir()
	cmd.Env = devEnv("STREAMER_JWT_SECRET=" + testSecret)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var all strings.Builder
	progressed := make(chan struct{})
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if !seen && strings.HasPrefix(sc.Text(), "progress") {
				seen = true
				close(progressed)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case <-progressed:
	case <-read:
		_ = cmd.Wait()
		t.Fatalf("call ended before any progress; stderr:\n%s", all.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("no progress within 30s")
	}
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	<-read
	err = cmd.Wait()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "want an exit error, got %v; stderr:\n%s", err, all.String())
	require.Equal(t, 130, ee.ExitCode(), "stderr:\n%s", all.String())
	out := all.String()
	require.Contains(t, out, "interrupted")
	require.Contains(t, out, id)
	require.Contains(t, out, "streamer call --resume "+id+" --url "+s.wsURL)
	require.Contains(t, out, "streamer cancel "+id+" --url "+s.wsURL)

	// The printed status command works as printed.
	m := followUp.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	args := strings.Fields(m[1])[1:]
	env := []string{"STREAMER_JWT_SECRET=" + testSecret}
	res := runCLI(t, env, args...)
	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	require.Contains(t, []string{"queued", "running"}, plainFields(res.stdout)["status"], "the request goes on")
	res = runCLI(t, env, "cancel", id, "--url", s.wsURL)
	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
}

func TestCLIDataDirSecret(t *testing.T) {
	t.Parallel()
	s := shared(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "jwt-secret"), []byte(testSecret+"\n"), 0o600))

	t.Run("token reads the data dir's secret", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, nil, "token", "--sub", "alice", "--data-dir", dir)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		_, err := jwt.Parse(strings.TrimSpace(res.stdout), func(*jwt.Token) (any, error) { return []byte(testSecret), nil },
			jwt.WithValidMethods([]string{"HS256"}))
		require.NoError(t, err)
	})

	t.Run("token reads ./.streamer/jwt-secret by default", func(t *testing.T) {
		t.Parallel()
		cwd := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(cwd, ".streamer"), 0o750))
		require.NoError(t, os.WriteFile(filepath.Join(cwd, ".streamer", "jwt-secret"), []byte(testSecret), 0o600))
		res := runCLIIn(t, cwd, nil, "token", "--sub", "alice")
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		_, err := jwt.Parse(strings.TrimSpace(res.stdout), func(*jwt.Token) (any, error) { return []byte(testSecret), nil },
			jwt.WithValidMethods([]string{"HS256"}))
		require.NoError(t, err)
	})

	t.Run("STREAMER_JWT_SECRET wins over the data dir", func(t *testing.T) {
		t.Parallel()
		other := strings.Repeat("z", 40)
		res := runCLI(t, []string{"STREAMER_JWT_SECRET=" + other}, "token", "--sub", "alice", "--data-dir", dir)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		_, err := jwt.Parse(strings.TrimSpace(res.stdout), func(*jwt.Token) (any, error) { return []byte(other), nil },
			jwt.WithValidMethods([]string{"HS256"}))
		require.NoError(t, err)
	})

	t.Run("a short data dir secret is an error", func(t *testing.T) {
		t.Parallel()
		bad := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(bad, "jwt-secret"), []byte("short"), 0o600))
		res := runCLI(t, nil, "token", "--sub", "alice", "--data-dir", bad)
		require.NotEqual(t, 0, res.code)
		require.Contains(t, res.stderr, "jwt-secret")
	})

	t.Run("call, status and actions mint a token with it", func(t *testing.T) {
		t.Parallel()
		env := []string{"STREAMER_URL=" + s.wsURL}
		res := runCLI(t, env, "call", "--data-dir", dir, "echo", `{"b":2}`)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		require.JSONEq(t, `{"b":2}`, res.stdout)
		res = runCLI(t, env, "actions", "--data-dir", dir)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		res = runCLI(t, env, "status", uid("none"), "--data-dir", dir)
		require.Equal(t, 1, res.code, "stderr: %s", res.stderr)
		require.Contains(t, res.stderr, "NOT_FOUND")
	})

	t.Run("no secret anywhere names the ways to give one", func(t *testing.T) {
		t.Parallel()
		res := runCLI(t, []string{"STREAMER_URL=" + s.wsURL}, "status", "x")
		require.Equal(t, 2, res.code)
		require.Contains(t, res.stderr, "STREAMER_JWT_SECRET")
		require.Contains(t, res.stderr, "--data-dir")
	})
}

func TestCLIDevLogsRefusalsAtDebug(t *testing.T) {
	t.Parallel()
	s := startDev(t, "--log-level", "debug")
	res := runCLI(t, callEnv(s), "call", "nope")
	require.Equal(t, 1, res.code)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(s.stderr.From(0), "code=INVALID_ACTION") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	logs := s.stderr.From(0)
	require.Contains(t, logs, "frame refused")
	require.Contains(t, logs, "code=INVALID_ACTION")
	require.Contains(t, logs, "DBG")
}
