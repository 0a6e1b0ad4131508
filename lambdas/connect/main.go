// Command connect is the $connect route Lambda. Build it with scripts/package.sh
// (make package); it reads its settings from STREAMER_* variables.
package main

import (
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/lambdas/plugins"
)

func main() {
	lambdaapp.Main(lambdaapp.Connect, plugins.All, func(h *lambdaapp.Handlers) any { return h.Connect })
}
