// Package plugins lists the plugins the router and processor Lambdas serve.
// Both must serve the same actions, so the list lives here once: adding a
// plugin is one line.
package plugins

import (
	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/plugins/demo"
)

// All returns the plugins of the deployment.
func All() []streamer.Plugin {
	return []streamer.Plugin{
		demo.New(),
		// Add your plugins here, e.g. billing.New(),
	}
}
