package deploy_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The stage and region the tests package for.
const (
	service = "streamer"
	stage   = "test"
	region  = "us-east-1"
)

// packageTimeout bounds one `osls package` run (it takes a few seconds).
const packageTimeout = 3 * time.Minute

// repoRoot is the repository's root, which holds serverless.yml.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "serverless.yml"))
	return root
}

// oslsBinary returns tools/node_modules/.bin/osls. When it is not installed
// the test is skipped, or fails under CI=true.
func oslsBinary(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(root, "tools", "node_modules", ".bin", "osls")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("osls is not installed (%v): run `make tools`", err)
		}
		t.Skipf("osls is not installed (%v): run `make tools` to test serverless.yml", err)
	}
	return bin
}

// oslsEnv is the whole environment of an `osls package` run: PATH (for
// node), an empty HOME (no ~/.aws, osls's schema cache goes there), no AWS
// credentials or configuration, nothing that could reach the network, and
// extra (the deploying shell's STREAMER_* settings). Nothing else is
// inherited, so the template does not depend on who runs the test.
func oslsEnv(home string, extra map[string]string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"AWS_CONFIG_FILE=" + filepath.Join(home, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "no-aws-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
		"SLS_TELEMETRY_DISABLED=1",
		"SLS_NOTIFICATIONS_MODE=off",
		"SLS_INTERACTIVE_SETUP_DISABLE=1",
		"NO_COLOR=1",
	}
	if tmp, ok := os.LookupEnv("TMPDIR"); ok {
		env = append(env, "TMPDIR="+tmp)
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// writePlaceholderZip writes a deployment zip holding one executable
// bootstrap, as scripts/package.sh does (osls only references the file).
func writePlaceholderZip(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("deploy: creating %s: %w", path, err)
	}
	zw := zip.NewWriter(f)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err == nil {
		_, err = w.Write([]byte("#!/bin/sh\necho placeholder >&2\nexit 1\n"))
	}
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("deploy: writing %s: %w", path, err)
	}
	return nil
}

// packageTemplate runs `osls package` on a copy of serverless.yml in a
// temporary directory, with placeholder zips, and returns the generated
// CloudFormation template.
func packageTemplate(t *testing.T, extraEnv map[string]string) cfnTemplate {
	t.Helper()
	root := repoRoot(t)
	bin := oslsBinary(t, root)

	dir := t.TempDir()
	yml, err := os.ReadFile(filepath.Join(root, "serverless.yml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "serverless.yml"), yml, 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "dist"), 0o755))
	for _, fn := range functions {
		require.NoError(t, writePlaceholderZip(filepath.Join(dir, "dist", fn+".zip")))
	}

	return oslsPackage(t, bin, dir, extraEnv)
}

// oslsPackage runs `osls package` in dir, which holds a serverless.yml and
// its dist/ zips, and returns the generated CloudFormation template.
func oslsPackage(t *testing.T, bin, dir string, extraEnv map[string]string) cfnTemplate {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), packageTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "package", "--stage", stage, "--region", region)
	cmd.Dir = dir
	cmd.Env = oslsEnv(t.TempDir(), extraEnv)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 10 * time.Second
	ownProcessGroup(cmd)
	err := cmd.Run()
	require.NoError(t, ctx.Err(), "osls package did not finish within %s; output:\n%s", packageTimeout, out.String())
	require.NoError(t, err, "osls package failed; output:\n%s", out.String())

	data, err := os.ReadFile(filepath.Join(dir, ".serverless", "cloudformation-template-update-stack.json"))
	require.NoError(t, err, "osls output:\n%s", out.String())
	var tpl cfnTemplate
	require.NoError(t, json.Unmarshal(data, &tpl))
	require.NotEmpty(t, tpl.Resources)
	return tpl
}

// --- CloudFormation template ------------------------------------------------

// cfnTemplate is a CloudFormation template.
type cfnTemplate struct {
	Conditions map[string]any
	Resources  map[string]cfnResource
	Outputs    map[string]struct{ Value any }
}

// condition evaluates the template's condition name, which may use
// Fn::Not, Fn::Equals (of values render writes) and Fn::And, Fn::Or.
func (tpl cfnTemplate) condition(t *testing.T, name string) bool {
	t.Helper()
	c, ok := tpl.Conditions[name]
	require.True(t, ok, "no condition %s", name)
	return tpl.evalCondition(t, c)
}

func (tpl cfnTemplate) evalCondition(t *testing.T, c any) bool {
	t.Helper()
	m, ok := c.(map[string]any)
	require.True(t, ok && len(m) == 1, "not a condition function: %v", c)
	for fn, arg := range m {
		args, _ := arg.([]any)
		switch fn {
		case "Condition":
			name, _ := arg.(string)
			return tpl.condition(t, name)
		case "Fn::Not":
			require.Len(t, args, 1)
			return !tpl.evalCondition(t, args[0])
		case "Fn::Equals":
			require.Len(t, args, 2)
			return mustRender(t, args[0]) == mustRender(t, args[1])
		case "Fn::And", "Fn::Or":
			all, anyTrue := true, false
			for _, a := range args {
				v := tpl.evalCondition(t, a)
				all, anyTrue = all && v, anyTrue || v
			}
			if fn == "Fn::And" {
				return all
			}
			return anyTrue
		}
		t.Fatalf("unsupported condition function %s", fn)
	}
	return false
}

// resolveIf resolves the Fn::If of a list element by the template's
// conditions: the branch taken, and false when that is AWS::NoValue.
func (tpl cfnTemplate) resolveIf(t *testing.T, v any) (any, bool) {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 || m["Fn::If"] == nil {
		return v, true
	}
	args, ok := m["Fn::If"].([]any)
	require.True(t, ok && len(args) == 3, "malformed Fn::If: %v", v)
	name, _ := args[0].(string)
	branch := args[2]
	if tpl.condition(t, name) {
		branch = args[1]
	}
	if ref, ok := branch.(map[string]any); ok && ref["Ref"] == "AWS::NoValue" {
		return nil, false
	}
	return tpl.resolveIf(t, branch)
}

// cfnResource is one resource; Properties is decoded by the test that
// checks it.
type cfnResource struct {
	Type       string
	Condition  string
	Properties json.RawMessage
}

// ofType lists the logical ids of the resources of type typ, sorted.
func (tpl cfnTemplate) ofType(typ string) []string {
	var ids []string
	for id, r := range tpl.Resources {
		if r.Type == typ {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// props decodes the properties of resource id, which must be of type typ.
func (tpl cfnTemplate) props(t *testing.T, id, typ string, into any) {
	t.Helper()
	r, ok := tpl.Resources[id]
	require.True(t, ok, "no resource %s; resources: %v", id, tpl.logicalIDs())
	require.Equal(t, typ, r.Type, "type of %s", id)
	require.NoError(t, json.Unmarshal(r.Properties, into), "properties of %s", id)
}

func (tpl cfnTemplate) logicalIDs() []string {
	ids := make([]string, 0, len(tpl.Resources))
	for id := range tpl.Resources {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// subVar is a ${Name} reference in an Fn::Sub string.
var subVar = regexp.MustCompile(`\$\{([^}]+)\}`)

// render writes a value built with intrinsic functions as a string in which
// {X} stands for Ref X and {X.Y} for Fn::GetAtt X.Y (in Fn::Join and
// Fn::Sub too), so tests can compare ARNs built in different ways.
func render(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case map[string]any:
		if len(x) != 1 {
			return "", fmt.Errorf("not an intrinsic function: %v", x)
		}
		for fn, arg := range x {
			switch fn {
			case "Ref":
				if s, ok := arg.(string); ok {
					return "{" + s + "}", nil
				}
			case "Fn::GetAtt":
				switch a := arg.(type) {
				case string:
					return "{" + a + "}", nil
				case []any:
					if len(a) == 2 {
						return fmt.Sprintf("{%v.%v}", a[0], a[1]), nil
					}
				}
			case "Fn::Join":
				if a, ok := arg.([]any); ok && len(a) == 2 {
					sep, ok1 := a[0].(string)
					parts, ok2 := a[1].([]any)
					if ok1 && ok2 {
						out := make([]string, len(parts))
						for i, p := range parts {
							s, err := render(p)
							if err != nil {
								return "", err
							}
							out[i] = s
						}
						return strings.Join(out, sep), nil
					}
				}
			case "Fn::Sub":
				if s, ok := arg.(string); ok {
					return subVar.ReplaceAllString(s, "{$1}"), nil
				}
			case "Fn::Select":
				// Of an Fn::Split of a rendered string.
				if a, ok := arg.([]any); ok && len(a) == 2 {
					i, ok1 := a[0].(float64)
					split, ok2 := a[1].(map[string]any)["Fn::Split"].([]any)
					if ok1 && ok2 && len(split) == 2 {
						sep, _ := split[0].(string)
						str, err := render(split[1])
						if err != nil {
							return "", err
						}
						parts := strings.Split(str, sep)
						if int(i) < 0 || int(i) >= len(parts) {
							return "", fmt.Errorf("Fn::Select index %v out of %d parts", i, len(parts))
						}
						return parts[int(i)], nil
					}
				}
			}
			return "", fmt.Errorf("unsupported intrinsic function %s: %v", fn, arg)
		}
	}
	return "", fmt.Errorf("cannot render %T %v", v, v)
}

// mustRender is render that fails the test.
func mustRender(t *testing.T, v any) string {
	t.Helper()
	s, err := render(v)
	require.NoError(t, err)
	return s
}

// renderAll renders a value that is one element or a list of them (an IAM
// statement's Action or Resource).
func renderAll(t *testing.T, v any) []string {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		list = []any{v}
	}
	out := make([]string, len(list))
	for i, e := range list {
		out[i] = mustRender(t, e)
	}
	return out
}
