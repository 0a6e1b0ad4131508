package cli

import (
	"archive/zip"
	"context"
	"flag"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// zipTime is the modification time of every zip entry, so that the same
// binary makes the same zip.
var zipTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// runPackage builds every main package lambdas/<function> of the module in
// --dir for the provided.al2023 runtime on arm64, and writes each to
// <out>/<function>.zip holding one file: the executable bootstrap, as
// serverless.yml's package.artifact expects.
func runPackage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("package", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".", "the module's root: its Lambdas are the main packages lambdas/<function>")
	out := fs.String("out", "dist", "where to write <function>.zip (relative to --dir)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", pos[0])}
	}
	fns, err := lambdaMains(*dir)
	if err != nil {
		return err
	}
	outDir := *out
	if !filepath.IsAbs(outDir) {
		outDir = filepath.Join(*dir, outDir)
	}
	if err := os.MkdirAll(outDir, 0o750); err != nil {
		return fmt.Errorf("--out %s: %w", *out, err)
	}
	work, err := os.MkdirTemp("", "streamer-package-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	for _, fn := range fns {
		bin := filepath.Join(work, fn, "bootstrap")
		cmd := exec.CommandContext(ctx, goBin, "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w",
			"-o", bin, "./lambdas/"+fn)
		cmd.Dir = *dir
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build lambdas/%s: %w", fn, err)
		}
		dst := filepath.Join(outDir, fn+".zip")
		if err := zipBootstrap(bin, dst); err != nil {
			return fmt.Errorf("zip lambdas/%s: %w", fn, err)
		}
		fmt.Fprintf(stdout, "package: %s\n", dst)
	}
	return nil
}

// lambdaMains returns the functions of the module in dir: the directories
// lambdas/<function> whose main.go is a main package.
func lambdaMains(dir string) ([]string, error) {
	mains, err := filepath.Glob(filepath.Join(dir, "lambdas", "*", "main.go"))
	if err != nil {
		return nil, err
	}
	var fns []string
	for _, m := range mains {
		f, err := parser.ParseFile(token.NewFileSet(), m, nil, parser.PackageClauseOnly)
		if err != nil {
			return nil, err
		}
		if f.Name.Name == "main" {
			fns = append(fns, filepath.Base(filepath.Dir(m)))
		}
	}
	if len(fns) == 0 {
		return nil, usageError{fmt.Sprintf("--dir %s: no Lambdas: no main package lambdas/<function>/main.go", dir)}
	}
	slices.Sort(fns)
	return fns, nil
}

// zipBootstrap writes the executable src to the zip dst as its only file,
// bootstrap, mode 0755.
func zipBootstrap(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	tmp := dst + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	z := zip.NewWriter(f)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate, Modified: zipTime}
	h.SetMode(0o755)
	w, err := z.CreateHeader(h)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, in); err != nil {
		return err
	}
	if err := z.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
