package streamer_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReadmeExampleBuilds compiles the plugin example of README.md as it
// stands, so the program a reader pastes keeps working.
func TestReadmeExampleBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program; skipped with -short")
	}
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(readme), "<!-- readme-example:start -->")
	require.True(t, ok, "README.md has no readme-example:start marker")
	block, _, ok := strings.Cut(rest, "<!-- readme-example:end -->")
	require.True(t, ok, "README.md has no readme-example:end marker")
	code, ok := strings.CutPrefix(strings.TrimSpace(block), "```go")
	require.True(t, ok, "the example is not a go code block")
	code = strings.TrimSuffix(strings.TrimSpace(code), "```")

	dir, err := os.MkdirTemp(".", "_readme")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(code), 0o600))
	cmd := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), "example"), "./"+filepath.Join(dir, "main.go"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "README example does not build:\n%s", out)
}
