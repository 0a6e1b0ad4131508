package lambdas_test

import (
	"archive/zip"
	"bytes"
	"debug/elf"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/lambdas/lambdaapp"
)

// functions are the Lambdas, by their directory under lambdas/.
var functions = func() []string {
	out := make([]string, 0, len(lambdaapp.Functions))
	for _, fn := range lambdaapp.Functions {
		out = append(out, string(fn))
	}
	return out
}()

// Every main package under lambdas/ is one of lambdaapp.Functions, and each
// of them has one: scripts/package.sh builds the former, serverless.yml and
// the tests list the latter.
func TestFunctionsAreTheMains(t *testing.T) {
	t.Parallel()
	mains, err := filepath.Glob(filepath.Join("*", "main.go"))
	require.NoError(t, err)
	dirs := make([]string, 0, len(mains))
	for _, m := range mains {
		f, err := parser.ParseFile(token.NewFileSet(), m, nil, parser.PackageClauseOnly)
		require.NoError(t, err)
		if f.Name.Name == "main" { // lambdaapp/main.go is not a command
			dirs = append(dirs, filepath.Dir(m))
		}
	}
	require.ElementsMatch(t, functions, dirs)
}

// scripts/package.sh builds dist/<function>.zip files holding exactly one
// file, an executable linux/arm64 bootstrap. It cross-compiles five
// binaries (seconds with a warm build cache), so -short skips it.
func TestPackageScript(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the Lambdas; skipped with -short")
	}
	t.Parallel()
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join("..", "scripts", "package.sh"), out)
	log, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", log)
	built, err := filepath.Glob(filepath.Join(out, "*.zip"))
	require.NoError(t, err)
	require.Len(t, built, len(functions), "one zip per function: %v", built)
	for _, fn := range functions {
		z, err := zip.OpenReader(filepath.Join(out, fn+".zip"))
		require.NoError(t, err, fn)
		t.Cleanup(func() { _ = z.Close() })
		require.Len(t, z.File, 1, fn)
		f := z.File[0]
		require.Equal(t, "bootstrap", f.Name, fn)
		require.True(t, f.Mode().IsRegular(), fn)
		require.Equal(t, "-rwxr-xr-x", f.Mode().String(), fn)

		r, err := f.Open()
		require.NoError(t, err)
		data, err := io.ReadAll(r)
		require.NoError(t, err)
		require.NoError(t, r.Close())
		bin, err := elf.NewFile(bytes.NewReader(data))
		require.NoError(t, err, "%s: bootstrap is not an ELF binary", fn)
		require.Equal(t, elf.EM_AARCH64, bin.Machine, fn)
		require.Equal(t, elf.ELFOSABI_NONE, bin.OSABI, fn) // Linux binaries from Go say SYSV
		require.Empty(t, interp(bin), "%s: a static binary has no interpreter (CGO_ENABLED=0)", fn)
	}
}

// interp is the binary's dynamic loader, empty for a static binary.
func interp(f *elf.File) string {
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, _ := io.ReadAll(p.Open())
			return string(b)
		}
	}
	return ""
}
