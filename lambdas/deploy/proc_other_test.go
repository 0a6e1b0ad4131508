//go:build !unix

package deploy_test

import "os/exec"

// ownProcessGroup leaves cmd as it is: outside unix, the context's
// cancellation kills the process alone.
func ownProcessGroup(*exec.Cmd) {}
