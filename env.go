package streamer

import (
	"context"
	"errors"
	"time"

	"github.com/streamer-go/streamer/blob"
)

// Env is what a runtime lends an app's plugins when it builds them: the
// same fields, filled by each runtime from its own resources, so one
// [PluginsFunc] serves `streamer dev`, `streamer dev --aws-local` and the
// Lambdas alike.
type Env struct {
	// Blobs is where plugins put large results and files, handing out
	// download URLs instead of sending the bytes as events: a directory of
	// the data dir under `streamer dev`, served by the dev server; an S3
	// bucket (STREAMER_BUCKET) with presigned URLs under --aws-local and on
	// Lambda. Nil when the deployment has no blob store: a plugin that
	// needs one returns [ErrNoBlobStore] (wrapped) from its PluginsFunc.
	Blobs blob.Store
	// Retention is how long the runtime keeps a request and its events
	// (STREAMER_RETENTION on Lambda, [DefaultRetention] otherwise): a
	// download URL handed out in a result should last as long, capped at
	// blob.MaxURLTTL.
	Retention time.Duration
}

// ErrNoBlobStore is returned, wrapped, by plugins that need [Env.Blobs]
// when the runtime has none. On Lambda it means STREAMER_BUCKET is unset.
var ErrNoBlobStore = errors.New("no blob store (on Lambda, set STREAMER_BUCKET to an S3 bucket)")

// URLTTL returns how long a download URL handed out with a result should
// last: the retention, capped at blob.MaxURLTTL, or fallback when the
// retention is unset.
func (e Env) URLTTL(fallback time.Duration) time.Duration {
	if e.Retention <= 0 {
		return fallback
	}
	return min(e.Retention, blob.MaxURLTTL)
}

// PluginsFunc builds an app's plugins. It is the one list of an app: its
// Lambdas (lambdaapp.Main), its dev server (cli.Main: `dev` and
// `dev --aws-local`) and its tests all take the same PluginsFunc, so a
// plugin added there is served everywhere. It is called once per process
// (on Lambda, at a cold start); an error stops the process at start, and
// should name the setting at fault. It makes no network call.
type PluginsFunc func(ctx context.Context, env Env) ([]Plugin, error)
