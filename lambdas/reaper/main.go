// Command reaper is the reaper Lambda, run on a schedule: it hands stalled
// requests back to the processor, or ends them. Build it with
// scripts/package.sh (make package); it reads its settings from STREAMER_*
// variables.
package main

import (
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/lambdas/plugins"
)

func main() {
	lambdaapp.Main(lambdaapp.Reaper, plugins.All, func(h *lambdaapp.Handlers) any { return h.Reap })
}
