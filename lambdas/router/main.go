// Command router is the router ($default route) Lambda. Build it with scripts/package.sh
// (make package); it reads its settings from STREAMER_* variables.
package main

import (
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/lambdas/plugins"
)

func main() {
	lambdaapp.Main(lambdaapp.Router, plugins.All, func(h *lambdaapp.Handlers) any { return h.Route })
}
