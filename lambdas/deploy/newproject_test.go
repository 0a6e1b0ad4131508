package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/cli"
	"github.com/streamer-go/streamer/client"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/plugins"
)

// newProjectTimeout bounds each step of the new-project test (a go build or
// test of the project, a server start, osls): generous, for loaded machines.
const newProjectTimeout = 5 * time.Minute

// shoutPlugin is a second plugin, written into the new project by the
// test, as a user would add one: a file of its own and one line in
// plugins/plugins.go.
const shoutPlugin = `// Package shout is a second plugin, added by a test.
package shout

import (
	"context"
	"fmt"
	"strings"

	"github.com/streamer-go/streamer"
)

// New returns the plugin: shout (sync) and spell (async).
func New() streamer.Plugin {
	return streamer.Plugin{Name: "shout", Actions: []streamer.Action{
		{Name: "shout", Handler: streamer.Typed(shout), Options: streamer.ActionOptions{Mode: streamer.ModeSync}},
		{Name: "spell", Handler: streamer.Typed(spell), Options: streamer.ActionOptions{Mode: streamer.ModeAsync}},
	}}
}

// In is the payload of both actions.
type In struct {
	Text string ` + "`json:\"text\" validate:\"required,max=50\"`" + `
}

func shout(_ context.Context, in In, _ streamer.Reporter) (map[string]string, error) {
	return map[string]string{"text": strings.ToUpper(in.Text)}, nil
}

func spell(ctx context.Context, in In, rep streamer.Reporter) (map[string]int, error) {
	for i, r := range in.Text {
		_ = rep.Report(ctx, streamer.Update{Percentage: float64(100*(i+1)) / float64(len(in.Text)), Message: fmt.Sprintf("%c", r)})
	}
	return map[string]int{"letters": len(in.Text)}, nil
}
`

// TestNewProject walks the path of a new user: `streamer new` (against this
// checkout), a second plugin added in its own file, the project's own
// `make test`, both plugins called over a real WebSocket under `dev` and
// under `dev --aws-local` (DynamoDB Local, the Lambda handlers, the stream),
// then `make package` and `osls package`, whose template must deploy the
// project's zips.
func TestNewProject(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a whole project; skipped with -short")
	}
	t.Parallel()
	root := repoRoot(t)
	osls := oslsBinary(t, root)
	dir := filepath.Join(t.TempDir(), "myapp")

	// 1. streamer new, as `go run ./cmd/streamer new` runs it.
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), newProjectTimeout)
	defer cancel()
	code := cli.Run(ctx, []string{"new", dir, "--module", "example.com/myapp", "--replace", root}, &out, &errOut, plugins.All)
	require.Equal(t, 0, code, "streamer new: %s%s", out.String(), errOut.String())
	for _, f := range []string{"go.mod", "go.sum", "main.go", "plugins/plugins.go", "plugins/hello/hello.go", "plugins/hello/hello_test.go",
		"e2e_test.go", "serverless.yml", "Makefile", ".gitignore", "README.md", "tools/package.json", "tools/package-lock.json",
		"lambdas/connect/main.go", "lambdas/disconnect/main.go", "lambdas/router/main.go", "lambdas/processor/main.go", "lambdas/reaper/main.go"} {
		require.FileExists(t, filepath.Join(dir, f))
	}

	// 2. A second plugin: its own file and one line in the list.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "plugins", "shout"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "plugins", "shout", "shout.go"), []byte(shoutPlugin), 0o644))
	list := filepath.Join(dir, "plugins", "plugins.go")
	src, err := os.ReadFile(list)
	require.NoError(t, err)
	edited := strings.Replace(string(src), "\t\"example.com/myapp/plugins/hello\"\n", "\t\"example.com/myapp/plugins/hello\"\n\t\"example.com/myapp/plugins/shout\"\n", 1)
	edited = strings.Replace(edited, "\t\t// Add your plugins here.\n", "\t\tshout.New(),\n\t\t// Add your plugins here.\n", 1)
	require.NotEqual(t, string(src), edited)
	require.NoError(t, os.WriteFile(list, []byte(edited), 0o644))

	// 3. The project's own tests.
	run(t, dir, "make", "test")

	// 4. Both plugins over a real WebSocket, on the embedded runtime and
	// on the AWS path.
	bin := filepath.Join(t.TempDir(), "myapp")
	run(t, dir, "go", "build", "-o", bin, ".")
	t.Run("dev", func(t *testing.T) {
		srv := startApp(t, bin, dir, "dev", "--data-dir", t.TempDir())
		callBothPlugins(t, srv)
	})
	t.Run("aws-local", func(t *testing.T) {
		aws := lambdatest.DynamoDBLocal(t)
		srv := startApp(t, bin, dir, "dev", "--aws-local", "--data-dir", t.TempDir(),
			"--dynamodb-endpoint", aws.Endpoint, "--table", fmt.Sprintf("newproject-%d", time.Now().UnixNano()))
		callBothPlugins(t, srv)
	})

	// 5. make package, then osls package of the project's serverless.yml.
	run(t, dir, "make", "package")
	tpl := oslsPackage(t, osls, dir, nil)
	state, err := os.ReadFile(filepath.Join(dir, ".serverless", "serverless-state.json"))
	require.NoError(t, err)
	var st struct {
		Service struct {
			Service   string
			Functions map[string]struct {
				Name    string
				Package struct{ Artifact string }
			}
		}
	}
	require.NoError(t, json.Unmarshal(state, &st))
	assert.Equal(t, "myapp", st.Service.Service)
	require.Len(t, st.Service.Functions, len(functions))
	for _, fn := range functions {
		f := st.Service.Functions[fn]
		assert.Equal(t, "dist/"+fn+".zip", f.Package.Artifact, fn)
		assert.Equal(t, "myapp-"+stage+"-"+fn, f.Name, fn)
		require.FileExists(t, filepath.Join(dir, "dist", fn+".zip"))
	}
	var lambdas int
	for _, id := range tpl.ofType("AWS::Lambda::Function") {
		var fn struct {
			FunctionName string
			Code         struct{ S3Key any }
		}
		tpl.props(t, id, "AWS::Lambda::Function", &fn)
		name := strings.TrimPrefix(fn.FunctionName, "myapp-"+stage+"-")
		assert.Contains(t, functions, name, id)
		assert.True(t, strings.HasSuffix(mustRender(t, fn.Code.S3Key), "/"+name+".zip"), "%s: code %v", id, fn.Code.S3Key)
		lambdas++
	}
	assert.Equal(t, len(functions), lambdas)
}

// run runs a command in dir, failing the test with its output.
func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), newProjectTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s in %s:\n%s", name, strings.Join(args, " "), dir, out)
}

// appServer is a running `myapp dev`.
type appServer struct {
	url, token string
}

// startApp runs the project's binary with args on a free loopback port and
// returns its WebSocket URL and the token it printed; it is interrupted
// and waited for when the test ends.
func startApp(t *testing.T, bin, dir string, args ...string) appServer {
	t.Helper()
	cmd := exec.Command(bin, append(args, "--addr", "127.0.0.1:0", "--log-level", "warn")...)
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-exited:
			assert.NoError(t, err, "%s exited badly; stderr:\n%s", bin, stderr.String())
		case <-time.After(newProjectTimeout):
			_ = cmd.Process.Kill()
			t.Errorf("%s did not stop within %s", bin, newProjectTimeout)
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	var srv appServer
	deadline := time.After(newProjectTimeout)
	for srv.url == "" || srv.token == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("%s %v exited before it served; stderr:\n%s", bin, args, stderr.String())
			}
			fields := strings.Fields(line)
			if len(fields) >= 2 && fields[0] == "websocket:" {
				srv.url = fields[1]
			}
			if len(fields) >= 2 && fields[0] == "token:" {
				srv.token = fields[1]
			}
		case <-deadline:
			t.Fatalf("%s %v did not serve within %s; stderr:\n%s", bin, args, newProjectTimeout, stderr.String())
		}
	}
	go func() {
		for range lines { //nolint:revive // drain the banner's last lines
		}
	}()
	return srv
}

// callBothPlugins calls the example plugin's and the added plugin's
// actions: results, progress, validation errors and a custom code.
func callBothPlugins(t *testing.T, srv appServer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), newProjectTimeout)
	defer cancel()
	c, err := client.Dial(ctx, srv.url, client.Options{Token: srv.token})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()

	actions, err := c.Actions(ctx)
	require.NoError(t, err)
	var names []string
	for _, a := range actions {
		names = append(names, a.Name+":"+a.Mode)
	}
	assert.ElementsMatch(t, []string{"greet:sync", "countdown:async", "shout:sync", "spell:async"}, names)

	res, err := c.Request(ctx, "greet", map[string]string{"name": "Ada"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"greeting":"Hello, Ada!"}`, string(res))

	var progress []client.Progress
	res, err = c.Request(ctx, "countdown", map[string]int{"from": 3, "interval_ms": 20},
		client.WithProgress(func(p client.Progress) { progress = append(progress, p) }))
	require.NoError(t, err)
	assert.JSONEq(t, `{"counted":3}`, string(res))
	require.NotEmpty(t, progress)
	assert.Equal(t, float64(100), progress[len(progress)-1].Percentage)
	assert.Equal(t, "0 left", progress[len(progress)-1].Message)

	res, err = c.Request(ctx, "shout", map[string]string{"text": "hey"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"text":"HEY"}`, string(res))

	progress = nil
	res, err = c.Request(ctx, "spell", map[string]string{"text": "abc"},
		client.WithProgress(func(p client.Progress) { progress = append(progress, p) }))
	require.NoError(t, err)
	assert.JSONEq(t, `{"letters":3}`, string(res))
	require.NotEmpty(t, progress)
	assert.Equal(t, float64(100), progress[len(progress)-1].Percentage)

	for _, bad := range []struct {
		action  string
		payload any
		code    string
	}{
		{"greet", map[string]string{}, streamer.CodeValidation},
		{"countdown", map[string]int{"from": 0}, streamer.CodeValidation},
		{"shout", map[string]string{"text": strings.Repeat("x", 51)}, streamer.CodeValidation},
		{"spell", map[string]string{}, streamer.CodeValidation},
		{"countdown", map[string]int{"from": 3, "abort_at": 1}, "COUNTDOWN_ABORTED"},
	} {
		_, err := c.Request(ctx, bad.action, bad.payload)
		var ce *client.Error
		if assert.True(t, errors.As(err, &ce), "%s %v: %v", bad.action, bad.payload, err) {
			assert.Equal(t, bad.code, ce.Code, "%s %v: %v", bad.action, bad.payload, err)
		}
	}
}
