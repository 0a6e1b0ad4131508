package cli

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"text/template"

	"github.com/streamer-go/streamer/lambdas/lambdaapp"
)

// frameworkModule is the module path of Streamer, which new projects
// require.
const frameworkModule = "github.com/streamer-go/streamer"

// newProject holds the files `streamer new` writes: *.tmpl files are
// text/templates of [projectData] (gitignore.tmpl becomes .gitignore), the
// others are copied as they are. lambda.go.tmpl is written once per
// function, as lambdas/<function>/main.go. serverless.yml is this
// repository's (a test keeps the two the same); its service line is
// replaced by the project's name.
//
//go:embed newproject
var newProject embed.FS

// projectData is what the project templates see.
type projectData struct {
	// Module is the project's module path.
	Module string
	// Name is the project's service name: lower case letters, digits and
	// hyphens.
	Name string
	// GoVersion is the go directive of the project's go.mod.
	GoVersion string
	// Version is the framework version required.
	Version string
	// Replace is the framework checkout the go.mod points at, or "".
	Replace string
	// Function and Const name one Lambda, for lambda.go.tmpl.
	Function, Const string
}

// modulePattern is what `streamer new` accepts as a module path: the
// characters of Go module paths, elements separated by single slashes.
var modulePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~-]*(/[A-Za-z0-9._~-]+)*$`)

// runNew writes a new project: `streamer new DIR --module PATH`.
func runNew(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("new", flag.ContinueOnError)
	fs.SetOutput(stderr)
	module := fs.String("module", "", "the new project's Go module path, such as example.com/myapp (required)")
	replace := fs.String("replace", "", "a local checkout of the framework that the project's go.mod points at (replace directive)")
	name := fs.String("name", "", "the service name in serverless.yml (default: from the module's last element)")
	noTidy := fs.Bool("no-tidy", false, "do not run go mod tidy (go.sum is then missing)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"want one directory: streamer new DIR --module example.com/myapp"}
	}
	dir := pos[0]
	if *module == "" {
		return usageError{"--module is required: the project's Go module path, such as example.com/myapp"}
	}
	if !modulePattern.MatchString(*module) {
		return usageError{fmt.Sprintf("--module %q: want a Go module path such as example.com/myapp (letters, digits, '.', '-', '_', '~', elements separated by '/')", *module)}
	}
	data := projectData{Module: *module, GoVersion: goVersion()}
	if data.Name, err = serviceName(*name, *module); err != nil {
		return err
	}
	if *replace != "" {
		if data.Replace, err = checkout(*replace); err != nil {
			return err
		}
		data.Version = "v0.0.0-00010101000000-000000000000"
	} else {
		data.Version = frameworkVersion()
	}
	if err := emptyDir(dir); err != nil {
		return err
	}
	if err := writeProject(dir, data); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "new: wrote %s (module %s)\n", dir, *module)
	if !*noTidy {
		if data.Version == "" {
			if err := goCmd(ctx, dir, stderr, "get", frameworkModule+"@latest"); err != nil {
				return fmt.Errorf("the project is written, but go get %s@latest failed (%w): run it in %s, then go mod tidy", frameworkModule, err, dir)
			}
		}
		if err := goCmd(ctx, dir, stderr, "mod", "tidy"); err != nil {
			return fmt.Errorf("the project is written, but go mod tidy failed (%w): run it in %s", err, dir)
		}
	}
	fmt.Fprintf(stdout, `
Next:
  cd %s
  go run . dev          # your plugins on this machine: WebSocket, demo page
  make test             # the plugins' tests and an end-to-end test
  make deploy STAGE=dev REGION=us-east-1
Add plugins in plugins/plugins.go; README.md has the rest.
`, shellQuote(dir))
	return nil
}

// writeProject renders the embedded project into dir.
func writeProject(dir string, data projectData) error {
	const root = "newproject"
	return fs.WalkDir(newProject, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel := strings.TrimPrefix(p, root+"/")
		raw, err := newProject.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case rel == "lambda.go.tmpl":
			for _, fn := range lambdaapp.Functions {
				fd := data
				fd.Function, fd.Const = string(fn), lambdaConst(fn)
				if err := render(dir, path.Join("lambdas", string(fn), "main.go"), rel, raw, fd); err != nil {
					return err
				}
			}
			return nil
		case rel == "serverless.yml":
			out, n := replaceService(raw, data.Name)
			if n != 1 {
				return errors.New("new: the embedded serverless.yml has no single 'service: streamer' line")
			}
			return writeFile(dir, rel, out)
		case rel == "gitignore.tmpl":
			return render(dir, ".gitignore", rel, raw, data)
		case strings.HasSuffix(rel, ".tmpl"):
			return render(dir, strings.TrimSuffix(rel, ".tmpl"), rel, raw, data)
		}
		return writeFile(dir, rel, raw)
	})
}

// render executes the template raw (named name) with data into dir/rel.
func render(dir, rel, name string, raw []byte, data projectData) error {
	t, err := template.New(name).Option("missingkey=error").Parse(string(raw))
	if err != nil {
		return fmt.Errorf("new: template %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return fmt.Errorf("new: template %s: %w", name, err)
	}
	return writeFile(dir, rel, b.Bytes())
}

// writeFile writes data to dir/rel (a slash path), making its directory.
func writeFile(dir, rel string, data []byte) error {
	dst := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644) //nolint:gosec // project files are meant to be read
}

// serviceLine is the service line of the embedded serverless.yml.
var serviceLine = regexp.MustCompile(`(?m)^service: streamer$`)

// replaceService replaces serverless.yml's service name, and reports how
// many lines it replaced.
func replaceService(raw []byte, name string) ([]byte, int) {
	n := len(serviceLine.FindAllIndex(raw, -1))
	return serviceLine.ReplaceAll(raw, []byte("service: "+name)), n
}

// servicePattern is what serverless.yml accepts as a service name, kept
// short so that "<service>-<stage>-processor" stays a valid Lambda name.
var servicePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// serviceName returns name, checked, or one made from the module's last
// element.
func serviceName(name, module string) (string, error) {
	if name != "" {
		if !servicePattern.MatchString(name) || strings.HasSuffix(name, "-") {
			return "", usageError{fmt.Sprintf("--name %q: want 1 to 32 lower-case letters, digits and '-', starting with a letter", name)}
		}
		return name, nil
	}
	last := strings.ToLower(path.Base(module))
	var b strings.Builder
	for _, r := range last {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	s := strings.TrimRight(b.String(), "-")
	s = strings.TrimLeft(s, "0123456789-")
	if len(s) > 32 {
		s = strings.TrimRight(s[:32], "-")
	}
	if s == "" {
		return "", usageError{fmt.Sprintf("--module %q: no service name in its last element; give one with --name", module)}
	}
	return s, nil
}

// lambdaConst is the name of fn's lambdaapp constant: "router" is Router.
func lambdaConst(fn lambdaapp.Function) string {
	s := string(fn)
	return strings.ToUpper(s[:1]) + s[1:]
}

// checkout returns the absolute path of a framework checkout, checking its
// go.mod.
func checkout(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	mod, err := os.ReadFile(filepath.Join(abs, "go.mod"))
	if err != nil {
		return "", usageError{fmt.Sprintf("--replace %s: not a checkout of %s: %v", dir, frameworkModule, err)}
	}
	if !regexp.MustCompile(`(?m)^module\s+` + regexp.QuoteMeta(frameworkModule) + `\s*$`).Match(mod) {
		return "", usageError{fmt.Sprintf("--replace %s: its go.mod is not module %s", dir, frameworkModule)}
	}
	return abs, nil
}

// emptyDir makes dir, or checks that it is empty.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("%s: %w", dir, err)
	case len(entries) > 0:
		return usageError{fmt.Sprintf("%s is not empty: streamer new writes a project into a new or empty directory", dir)}
	}
	return nil
}

// goVersion is the go directive of new projects: the language version of
// the toolchain this program was built with (go1.26.6 gives 1.26.6).
func goVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := strings.TrimPrefix(bi.GoVersion, "go"); regexp.MustCompile(`^1\.\d+(\.\d+)?$`).MatchString(v) {
			return v
		}
	}
	return "1.26"
}

// frameworkVersion is the framework version this program was built
// with, when it is a released or pseudo version; "" when unknown (a
// development build), and new then runs go get ...@latest.
func frameworkVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	mods := append([]*debug.Module{&bi.Main}, bi.Deps...)
	for _, m := range mods {
		if m.Path == frameworkModule && m.Replace == nil && strings.HasPrefix(m.Version, "v") && !strings.Contains(m.Version, "+dirty") {
			return m.Version
		}
	}
	return ""
}

// goCmd runs the go command in dir, its output to w.
func goCmd(ctx context.Context, dir string, w io.Writer, args ...string) error {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = w, w
	return cmd.Run()
}
