package ops_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// awsFacing are the module's packages (and, ending in "/", trees of
// packages) that may depend on the AWS SDK or aws-lambda-go; every other
// package, the core and ops among them, builds with no AWS.
var awsFacing = []string{
	"blob/s3blob", "cli", "cmd/streamer", "internal/awsretry", "lambdas/", "ops/sqsredrive",
	"ratelimit/dynamodb", "storage/dynamodb", "transport/apigateway",
}

// testOnly are modules no package may depend on outside its tests.
var testOnly = []string{"github.com/Admiral-Piett/goaws"}

// TestImportBoundary: the AWS SDK stays in the AWS-facing packages, and
// the local SQS server of the tests stays in tests.
func TestImportBoundary(t *testing.T) {
	const module = "github.com/streamer-go/streamer"
	out, err := exec.CommandContext(t.Context(), "go", "list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", module+"/...").CombinedOutput()
	require.NoError(t, err, "%s", out)
	var sawCore, sawOps, sawSQS bool
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, deps := strings.TrimPrefix(strings.TrimPrefix(fields[0], module), "/"), fields[1:]
		sawCore = sawCore || pkg == ""
		sawOps = sawOps || pkg == "ops"
		sawSQS = sawSQS || pkg == "ops/sqsredrive"
		aws := slices.IndexFunc(deps, func(d string) bool {
			return strings.HasPrefix(d, "github.com/aws/aws-sdk-go") || strings.HasPrefix(d, "github.com/aws/aws-lambda-go")
		})
		facing := slices.ContainsFunc(awsFacing, func(p string) bool {
			return pkg == p || strings.HasPrefix(pkg, p+"/") || (strings.HasSuffix(p, "/") && strings.HasPrefix(pkg, p))
		})
		if aws >= 0 && !facing {
			t.Errorf("%s depends on %s: only the AWS-facing packages may (%v)", fields[0], deps[aws], awsFacing)
		}
		for _, m := range testOnly {
			if i := slices.IndexFunc(deps, func(d string) bool { return strings.HasPrefix(d, m) }); i >= 0 && pkg != "ops/sqsredrive/sqslocal" {
				t.Errorf("%s depends on %s, which is for tests only", fields[0], deps[i])
			}
		}
	}
	require.True(t, sawCore && sawOps && sawSQS, "go list listed the module's packages")
}
