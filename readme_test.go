package streamer_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// readmeBlock returns the go code block of README.md between the
// <!-- name:start --> and <!-- name:end --> markers.
func readmeBlock(t *testing.T, name string) string {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(readme), "<!-- "+name+":start -->")
	require.True(t, ok, "README.md has no %s:start marker", name)
	block, _, ok := strings.Cut(rest, "<!-- "+name+":end -->")
	require.True(t, ok, "README.md has no %s:end marker", name)
	code, ok := strings.CutPrefix(strings.TrimSpace(block), "```go")
	require.True(t, ok, "the %s block is not a go code block", name)
	return strings.TrimSuffix(strings.TrimSpace(code), "```")
}

// readmeDir writes files into a fresh directory of this module, removed when
// the test ends, and returns its relative path.
func readmeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir, err := os.MkdirTemp(".", "_readme")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	for name, code := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(code), 0o600))
	}
	return dir
}

// TestReadmeExampleBuilds compiles the plugin example of README.md as it
// stands, so the program a reader pastes keeps working.
func TestReadmeExampleBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program; skipped with -short")
	}
	dir := readmeDir(t, map[string]string{"main.go": readmeBlock(t, "readme-example")})
	cmd := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), "example"), "./"+filepath.Join(dir, "main.go"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "README example does not build:\n%s", out)
}

// TestReadmeTestPasses runs the streamertest example of README.md against
// the plugin example, as a reader would with go test.
func TestReadmeTestPasses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a test binary; skipped with -short")
	}
	dir := readmeDir(t, map[string]string{
		"main.go":      readmeBlock(t, "readme-example"),
		"main_test.go": readmeBlock(t, "readme-test"),
	})
	cmd := exec.Command("go", "test", "-count=1", "./"+dir)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "README test does not pass:\n%s", out)
}
