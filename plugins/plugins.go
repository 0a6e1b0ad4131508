// Package plugins is the plugin list of this repository's own app: the
// demo and report plugins. Its [All] is the one list that `streamer dev`,
// `streamer dev --aws-local` and this repository's Lambdas serve, built the
// same way as the list of a project made with `streamer new` (its
// plugins/plugins.go). To serve plugins of your own, make such a project
// rather than editing this one.
package plugins

import (
	"context"
	"fmt"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/plugins/demo"
	"github.com/streamer-go/streamer/plugins/report"
)

var _ streamer.PluginsFunc = All

// All returns the plugins, whatever the runtime: the demo plugin, and the
// report plugin, which writes its reports to env.Blobs (an S3 bucket on
// Lambda) with download URLs that last the request's retention (at most
// blob.MaxURLTTL). Without a blob store it fails, wrapping
// [streamer.ErrNoBlobStore].
func All(_ context.Context, env streamer.Env) ([]streamer.Plugin, error) {
	if env.Blobs == nil {
		return nil, fmt.Errorf("the report plugin's files: %w", streamer.ErrNoBlobStore)
	}
	reports, err := report.New(report.Config{Store: env.Blobs, TTL: env.URLTTL(report.DefaultTTL)})
	if err != nil {
		return nil, err
	}
	return []streamer.Plugin{demo.New(), reports}, nil
}
