package lambdaapp

import (
	"context"

	"github.com/streamer-go/streamer"
)

// Submitter names the configuration of backend code that submits requests
// ([NewSubmitter]): another Lambda, a scheduled job, an HTTP service. It is
// not one of the [Functions] Streamer deploys.
const Submitter Function = "submitter"

// NewSubmitter returns the App with which backend code submits requests to a
// deployed Streamer on behalf of a principal ([streamer.App.Submit]), from
// the same STREAMER_* configuration as the Lambdas (read through getenv:
// os.Getenv in a main package) and the same plugins (plugins, the app's one
// list, such as plugins.All), so a submitted request passes the admission a
// frame passes: the actions, their validation and scopes, and the
// middleware (the Lambdas' Logging and Auth, then the plugins').
//
// It needs STREAMER_TABLE, the table the Lambdas use. A request sent over
// a connection carries the Management API endpoint of its connection; a
// submitted one has none (unless STREAMER_ENDPOINT names one), so the
// processor posts its events to each client that resumes it at the
// endpoint stored with that client's connection. The other settings are
// read as the router reads them; no JWT key is needed. The
// caller's IAM role needs dynamodb:PutItem, GetItem and Query on the table.
//
// Submit stores the request in the table, whose stream hands it to the
// processor as it hands a request sent by a client; nothing runs in the
// submitting process. A request delayed with NotBefore is waited for by
// the processor's job: an invocation waits while the request falls due
// before its deadline, and hands it on to a new invocation otherwise, so a
// long delay costs one idle processor invocation at a time until it is due.
//
// NewSubmitter makes no network call. Build it once per process (at a
// Lambda's cold start) and share it: the App is safe for concurrent use.
func NewSubmitter(ctx context.Context, getenv func(string) string, plugins streamer.PluginsFunc) (*streamer.App, error) {
	h, err := Build(ctx, Submitter, getenv, plugins)
	if err != nil {
		return nil, err
	}
	return h.App(), nil
}
