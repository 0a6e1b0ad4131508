package deploy_test

import (
	"archive/zip"
	"bytes"
	"debug/elf"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDistZips checks the deployment zips serverless.yml points at, when
// `make package` has built them: each holds exactly one executable
// bootstrap, a Linux arm64 binary as provided.al2023 on arm64 runs it.
func TestDistZips(t *testing.T) {
	t.Parallel()
	dist := filepath.Join(repoRoot(t), "dist")
	for _, fn := range functions {
		t.Run(fn, func(t *testing.T) {
			path := filepath.Join(dist, fn+".zip")
			if _, err := os.Stat(path); err != nil {
				t.Skipf("%s is not built (%v): run `make package`", path, err)
			}
			zr, err := zip.OpenReader(path)
			require.NoError(t, err)
			defer func() { assert.NoError(t, zr.Close()) }()

			require.Len(t, zr.File, 1, "%s must hold only bootstrap", path)
			f := zr.File[0]
			assert.Equal(t, "bootstrap", f.Name)
			assert.True(t, f.Mode().IsRegular(), "bootstrap is a regular file")
			assert.NotZero(t, f.Mode().Perm()&0o111, "bootstrap is executable (mode %v)", f.Mode())

			rc, err := f.Open()
			require.NoError(t, err)
			data, err := io.ReadAll(rc)
			require.NoError(t, rc.Close())
			require.NoError(t, err)
			bin, err := elf.NewFile(bytes.NewReader(data))
			require.NoError(t, err, "bootstrap is an ELF binary")
			assert.Equal(t, elf.EM_AARCH64, bin.Machine, "bootstrap's architecture")
			assert.Equal(t, elf.ELFCLASS64, bin.Class)
			assert.Equal(t, elf.ET_EXEC, bin.Type, "bootstrap is an executable")
			require.NoError(t, bin.Close())
		})
	}
}
