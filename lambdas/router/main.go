// Command router is the router ($default route) Lambda of this
// repository's app. Build it with `make package`; it reads its settings
// from STREAMER_* variables (see lambdaapp.ConfigFromEnv).
package main

import (
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/plugins"
)

func main() { lambdaapp.Main(lambdaapp.Router, plugins.All) }
