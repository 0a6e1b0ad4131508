// Package plugins lists the plugins this repository's deployments serve:
// the Lambdas, `streamer dev --aws-local` and plain `streamer dev` all build
// them with [New], so the list lives here once: adding a plugin is one line.
package plugins

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/blob"
	"github.com/streamer-go/streamer/blob/s3blob"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/plugins/demo"
	"github.com/streamer-go/streamer/plugins/report"
)

var _ lambdaapp.PluginsFunc = All

// All returns the plugins of the deployment, a [lambdaapp.PluginsFunc]: the
// demo plugin, and the report plugin, which writes its reports to the S3
// bucket STREAMER_BUCKET (required) under reports/ and hands out presigned
// URLs that last the request's retention (STREAMER_RETENTION, at most
// blob.MaxURLTTL). The S3 client comes from awsCfg, so
// AWS_ENDPOINT_URL_S3 points it at a local server (in path style). All
// makes no network call.
func All(_ context.Context, cfg lambdaapp.Config, awsCfg aws.Config) ([]streamer.Plugin, error) {
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("%s is required: the S3 bucket of the report plugin's files", lambdaapp.EnvBucket)
	}
	store, err := s3blob.New(s3blob.Config{AWS: awsCfg, Bucket: cfg.Bucket})
	if err != nil {
		return nil, fmt.Errorf("the report plugin's bucket: %w (AWS_REGION and credentials come from the environment)", err)
	}
	return New(store, cfg.Retention)
}

// New returns the plugins, whatever the runtime: the demo plugin, and the
// report plugin writing its files to store, with download URLs that last
// retention (at most blob.MaxURLTTL; zero means report.DefaultTTL).
func New(store blob.Store, retention time.Duration) ([]streamer.Plugin, error) {
	ttl := report.DefaultTTL
	if retention > 0 {
		ttl = min(retention, blob.MaxURLTTL)
	}
	reports, err := report.New(report.Config{Store: store, TTL: ttl})
	if err != nil {
		return nil, err
	}
	return []streamer.Plugin{
		demo.New(),
		reports,
		// Add your plugins here, e.g. billing.New(),
	}, nil
}
