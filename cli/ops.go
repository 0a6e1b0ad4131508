package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/blob/localblob"
	"github.com/streamer-go/streamer/ops"
	"github.com/streamer-go/streamer/ops/sqsredrive"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/bolt"
	"github.com/streamer-go/streamer/storage/dynamodb"
	"github.com/streamer-go/streamer/transport"
	"github.com/streamer-go/streamer/transport/apigateway"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

const opsUsage = `Usage:
  streamer ops list    [--status running] [--action A] [--tenant T] [--within 24h] [--limit N] [--cursor C] [--json]
  streamer ops inspect KEY [--json]
  streamer ops cancel  KEY
  streamer ops retry   KEY
  streamer ops redrive [FILE|-] [--retry-failed] [--function NAME]
  streamer ops redrive --queue-url URL [--max N] [--retry-failed] [--function NAME] [--drop-malformed]

Operator commands over the store, across every principal. KEY is a request's
key as list prints it: TENANT|SUBJECT|ID (quote it in the shell).

Store (one of):
  --data-dir DIR   the embedded runtime's bolt file DIR/streamer.db (default .streamer).
                   A running streamer dev holds it locked: stop it first, or browse
                   its read-only /ops page (the URL it prints).
  --table NAME     a DynamoDB table; endpoint, region and credentials come from the
                   AWS_* environment (AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION, ...).
  --endpoint URL   with --table: the Management API endpoint cancel posts its
                   terminal event to (default: the one each connection stored; for
                   streamer dev --aws-local, the management URL its banner prints).

list: --status is queued, retrying (queued after a run), running, canceling,
succeeded, failed or canceled (default running); --within keeps those whose
status time (due for live, finished for final ones) is that recent.
cancel: as a client's cancel, exactly one terminal event. With --table, a request
still queued is settled here and its event posted to the connections following it
(through the API Gateway Management API); a running one ends in its processor.
retry: a failed request becomes a new request ID:retry-1 (same principal, action,
payload); retrying again finds the same retry.
redrive: handles the processor's failure-queue messages. A job whose request is
live is invoked again with --function (the processor function, via the AWS_*
environment), else left to the reaper; --retry-failed retries a failed one.
With --queue-url (the SQS queue, stack output ProcessorDeadLetterQueueUrl) it
receives them from SQS, 10 at a time, until the queue answers none or --max
(default 1000) were handled, and deletes each one that is done with: all but a
live request's left to the reaper (it comes back after the queue's visibility
timeout) and, unless --drop-malformed, a body that is not a failure record.
Endpoint, region and credentials come from the AWS_* environment
(AWS_ENDPOINT_URL_SQS, AWS_REGION, ...). Otherwise it reads message bodies from
FILE or stdin: one JSON body per line, or the output of aws sqs receive-message
(delete those messages yourself). streamer dev --aws-local keeps its failed jobs
in DATA-DIR/failure-queue.jsonl, in the same format, or sends them to an SQS
queue with --failure-queue-url.
`

// opsFlags are the store flags of every ops command.
type opsFlags struct {
	dataDir, table, endpoint string
	asJSON                   bool
}

func (f *opsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", devserver.DefaultDataDir, "the embedded runtime's data dir (its bolt file streamer.db)")
	fs.StringVar(&f.table, "table", "", "a DynamoDB table instead of the data dir (AWS_* environment)")
	fs.StringVar(&f.endpoint, "endpoint", "", "with --table: the Management API endpoint to post events to (default: each connection's own)")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON")
}

// runOps is `streamer ops`.
func runOps(ctx context.Context, args []string, stdout, stderr io.Writer, plugins streamer.PluginsFunc) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, opsUsage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	sub := args[0]
	fs := flag.NewFlagSet("ops "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, opsUsage+"\nFlags:\n"); fs.PrintDefaults() }
	var of opsFlags
	of.register(fs)
	var (
		q               ops.Query
		within          time.Duration
		retryFailed     bool
		function        string
		rf              redriveFlags
		minArgs, maxArg int
	)
	switch sub {
	case "list":
		fs.StringVar(&q.Status, "status", string(storage.StatusRunning), "queued, retrying, running, canceling, succeeded, failed or canceled")
		fs.StringVar(&q.Action, "action", "", "only this action's requests")
		fs.StringVar(&q.Tenant, "tenant", "", "only this tenant's requests")
		fs.DurationVar(&within, "within", 0, "only those whose status time is at most this long ago (finished in the last N hours: --status failed --within Nh)")
		fs.IntVar(&q.Limit, "limit", storage.DefaultListLimit, fmt.Sprintf("requests per page, 1-%d", storage.MaxListLimit))
		fs.StringVar(&q.Cursor, "cursor", "", "go on from the cursor a previous page printed")
	case "inspect", "cancel", "retry":
		minArgs, maxArg = 1, 1
	case "redrive":
		fs.BoolVar(&retryFailed, "retry-failed", false, "retry (as new requests) the jobs whose request failed")
		fs.StringVar(&function, "function", "", "the processor function to invoke with the jobs of live requests (default: leave them to the reaper)")
		fs.StringVar(&rf.queueURL, "queue-url", "", "receive the messages from this SQS queue, and delete those done with (AWS_* environment)")
		fs.IntVar(&rf.max, "max", sqsredrive.DefaultMax, "with --queue-url: handle at most this many messages")
		fs.BoolVar(&rf.dropMalformed, "drop-malformed", false, "with --queue-url: delete the messages that are not failure records (default: report them and leave them)")
		minArgs, maxArg = 0, 1
	default:
		fmt.Fprintf(stderr, "streamer ops: unknown command %q\n\n%s", sub, opsUsage)
		return exitUsage
	}
	pos, err := parseInterleaved(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "streamer ops %s: %v\n", sub, err)
		return exitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "streamer ops %s: %s\n", sub, fmt.Sprintf(format, a...))
		return exitUsage
	}
	switch {
	case len(pos) < minArgs:
		return usage("missing KEY (TENANT|SUBJECT|ID, as `streamer ops list` prints it)")
	case len(pos) > maxArg:
		return usage("unexpected argument %q", pos[maxArg])
	case sub == "list" && (q.Limit < 1 || q.Limit > storage.MaxListLimit):
		return usage("--limit %d: must be 1 to %d", q.Limit, storage.MaxListLimit)
	case within < 0:
		return usage("--within %v: must be positive", within)
	case of.endpoint != "" && of.table == "":
		return usage("--endpoint needs --table: the embedded runtime's connections end with its streamer dev")
	case function != "" && of.table == "":
		return usage("--function needs --table: the embedded runtime has no processor function (its worker resumes live requests when streamer dev starts)")
	case rf.queueURL != "" && len(pos) > 0:
		return usage("give FILE or --queue-url, not both")
	case sub == "redrive" && rf.queueURL == "" && (rf.dropMalformed || rf.max != sqsredrive.DefaultMax):
		return usage("--max and --drop-malformed need --queue-url")
	case sub == "redrive" && rf.max < 1:
		return usage("--max %d: must be at least 1", rf.max)
	}
	if sub == "list" {
		if _, err := ops.ParseStatus(q.Status); err != nil {
			return usage("--status %q: use queued, retrying, running, canceling, succeeded, failed or canceled", q.Status)
		}
		q.Within = within
	}
	var key storage.Key
	if minArgs == 1 {
		if key, err = storage.ParseKey(pos[0]); err != nil || key.ID == "" {
			return usage("KEY %q: want TENANT|SUBJECT|ID, as `streamer ops list` prints it (quote it in the shell)", pos[0])
		}
	}

	o, closeStore, err := openOps(ctx, of, plugins, sub == "cancel" || sub == "retry" || (sub == "redrive" && retryFailed))
	if err != nil {
		fmt.Fprintf(stderr, "streamer ops %s: %v\n", sub, err)
		return exitFailed
	}
	defer closeStore()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "streamer ops %s: %v\n", sub, err)
		return exitFailed
	}
	switch sub {
	case "list":
		page, err := o.List(ctx, q)
		if err != nil {
			return fail(err)
		}
		printOpsList(stdout, page, of.asJSON)
	case "inspect":
		d, err := o.Inspect(ctx, key)
		if err != nil {
			return fail(err)
		}
		printOpsDetail(stdout, d, of.asJSON)
	case "cancel":
		r, err := o.Cancel(ctx, key)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s: %s\n", key.ID, r.Status)
	case "retry":
		res, err := o.Retry(ctx, key)
		if err != nil {
			return fail(err)
		}
		what := "submitted"
		if res.Existing {
			what = "already submitted"
		}
		fmt.Fprintf(stdout, "%s: retry %s %s (%s)\n", key.ID, storage.Key{Tenant: key.Tenant, Subject: key.Subject, ID: res.ID}, what, res.Status)
	case "redrive":
		return redrive(ctx, o, of, pos, rf, function, retryFailed, stdout, stderr)
	}
	return exitOK
}

// openOps opens the store the flags name and the Ops over it; with an app,
// an App built from the plugins on that store (cancel and retry act
// through it).
func openOps(ctx context.Context, of opsFlags, plugins streamer.PluginsFunc, withApp bool) (*ops.Ops, func(), error) {
	var (
		store   storage.Store
		closeFn = func() {}
		blobDir string
		sender  transport.Sender = transport.SenderFunc(func(context.Context, string, string, []byte) error { return nil })
	)
	if of.table != "" {
		awsCfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("AWS configuration: %w", err)
		}
		if awsCfg.Region == "" {
			awsCfg.Region = "us-east-1"
		}
		s, err := dynamodb.New(dynamodb.Config{Client: awsddb.NewFromConfig(awsCfg), Table: of.table})
		if err != nil {
			return nil, nil, fmt.Errorf("--table: %w", err)
		}
		store = s
		if withApp {
			if sender, err = managementSender(awsCfg, of.endpoint); err != nil {
				return nil, nil, err
			}
			if blobDir, err = os.MkdirTemp("", "streamer-ops-"); err != nil {
				return nil, nil, err
			}
			closeFn = func() { _ = os.RemoveAll(blobDir) }
		}
	} else {
		path := filepath.Join(of.dataDir, "streamer.db")
		if _, err := os.Stat(path); err != nil {
			return nil, nil, fmt.Errorf("--data-dir %s: no database %s (run streamer dev with this data dir first)", of.dataDir, path)
		}
		bs, err := bolt.Open(path, bolt.Options{Timeout: 2 * time.Second})
		if errors.Is(err, bolt.ErrLocked) {
			return nil, nil, fmt.Errorf("--data-dir %s: %s is in use, most likely by a running streamer dev: stop it first, or browse its read-only operator page (the ops URL it prints)", of.dataDir, path)
		}
		if err != nil {
			return nil, nil, err
		}
		store, closeFn, blobDir = bs, func() { _ = bs.Close() }, filepath.Join(of.dataDir, "blobs")
	}
	if !withApp {
		return ops.New(store, nil), closeFn, nil
	}
	app, err := opsApp(ctx, store, sender, plugins, blobDir)
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	return ops.New(store, app), closeFn, nil
}

// opsApp builds the App cancel and retry act through: the plugins on the
// store, posting with sender.
func opsApp(ctx context.Context, store storage.Store, sender transport.Sender, plugins streamer.PluginsFunc, blobDir string) (*streamer.App, error) {
	blobs, err := localblob.New(localblob.Config{Dir: blobDir, BaseURL: "http://127.0.0.1/blobs/"})
	if err != nil {
		return nil, err
	}
	built, err := plugins(ctx, streamer.Env{Blobs: blobs, Retention: streamer.DefaultRetention})
	if err != nil {
		return nil, fmt.Errorf("building the plugins: %w", err)
	}
	return streamer.New(streamer.Config{Store: store, Sender: sender, Plugins: built})
}

// managementSender posts to connections through the API Gateway
// Management API: to each connection's stored endpoint, or to endpoint
// when it is set. On the data dir there is no sender: its connections end
// with the streamer dev that holds the file, and a client reads what it
// missed when it resumes.
func managementSender(awsCfg aws.Config, endpoint string) (transport.Sender, error) {
	s, err := apigateway.New(apigateway.Config{AWS: awsCfg, Endpoint: endpoint, MaxRetries: 2})
	if err != nil {
		return nil, fmt.Errorf("--endpoint: %w", err)
	}
	if endpoint == "" {
		return s, nil
	}
	return transport.SenderFunc(func(ctx context.Context, _, connID string, data []byte) error {
		return s.Send(ctx, endpoint, connID, data)
	}), nil
}

func printOpsList(w io.Writer, page ops.Page, asJSON bool) {
	if asJSON {
		type row struct {
			Key           string             `json:"key"`
			Tenant        string             `json:"tenant"`
			Subject       string             `json:"subject"`
			ID            string             `json:"id"`
			Action        string             `json:"action"`
			Status        storage.Status     `json:"status"`
			Attempt       int                `json:"attempt"`
			Stalls        int                `json:"stalls"`
			Continuations int                `json:"continuations"`
			StatusTime    time.Time          `json:"status_time"`
			CreatedAt     time.Time          `json:"created_at"`
			UpdatedAt     time.Time          `json:"updated_at"`
			Error         *storage.ErrorInfo `json:"error,omitempty"`
		}
		out := struct {
			Requests []row  `json:"requests"`
			Cursor   string `json:"cursor,omitempty"`
		}{Requests: []row{}, Cursor: page.Cursor}
		for _, r := range page.Requests {
			out.Requests = append(out.Requests, row{
				Key: r.Key.String(), Tenant: r.Key.Tenant, Subject: r.Key.Subject, ID: r.Key.ID, Action: r.Action, Status: r.Status,
				Attempt: r.Attempt, Stalls: r.Stalls, Continuations: r.Continuations, StatusTime: storage.StatusTime(r),
				CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Error: r.Error,
			})
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintln(w, string(b))
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tACTION\tSTATUS\tATTEMPT\tSTALLS\tSTATUS TIME\tERROR")
	for _, r := range page.Requests {
		errText := ""
		if r.Error != nil {
			errText = r.Error.Code + ": " + r.Error.Message
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", r.Key, r.Action, r.Status, r.Attempt, r.Stalls,
			storage.StatusTime(r).UTC().Format(time.RFC3339), errText)
	}
	_ = tw.Flush()
	if len(page.Requests) == 0 {
		fmt.Fprintln(w, "(none)")
	}
	if page.Cursor != "" {
		fmt.Fprintf(w, "more: --cursor %s\n", page.Cursor)
	}
}

func printOpsDetail(w io.Writer, d ops.Detail, asJSON bool) {
	if asJSON {
		b, _ := json.MarshalIndent(d, "", "  ")
		fmt.Fprintln(w, string(b))
		return
	}
	r := d.Request
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	row("key", r.Key.String())
	row("action", r.Action)
	row("status", string(r.Status))
	row("attempt", fmt.Sprint(r.Attempt))
	row("stalls", fmt.Sprint(r.Stalls))
	row("continuations", fmt.Sprint(r.Continuations))
	row("lease until", ts(r.LeaseUntil))
	row("not before", ts(r.NotBefore))
	row("created", ts(r.CreatedAt))
	row("started", ts(r.StartedAt))
	row("updated", ts(r.UpdatedAt))
	row("expires", ts(r.ExpiresAt))
	row("payload", string(r.Payload))
	if len(r.Checkpoint) > 0 {
		row("checkpoint", string(r.Checkpoint))
	}
	if len(r.Result) > 0 {
		row("result", string(r.Result))
	}
	if r.Error != nil {
		row("error", r.Error.Code+": "+r.Error.Message)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "events (%d):\n", len(d.Events))
	for _, ev := range d.Events {
		fmt.Fprintf(w, "  %d %s %s %s\n", ev.Seq, ev.Type, ts(ev.CreatedAt), ev.Data)
	}
}

// redriveBodies reads failure-queue message bodies: the output of `aws sqs
// receive-message` ({"Messages":[{"Body":...}]}), or one body per line.
func redriveBodies(in []byte) [][]byte {
	var sqs struct {
		Messages []struct {
			Body string `json:"Body"`
		} `json:"Messages"`
	}
	if json.Unmarshal(in, &sqs) == nil && sqs.Messages != nil {
		out := make([][]byte, len(sqs.Messages))
		for i, m := range sqs.Messages {
			out[i] = []byte(m.Body)
		}
		return out
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(in))
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			out = append(out, append([]byte(nil), line...))
		}
	}
	return out
}

// redriveFlags are the flags of redrive from SQS.
type redriveFlags struct {
	queueURL      string
	max           int
	dropMalformed bool
}

func redrive(ctx context.Context, o *ops.Ops, of opsFlags, pos []string, rf redriveFlags, function string, retryFailed bool, stdout, stderr io.Writer) int {
	var dispatch ops.Dispatcher
	if function != "" {
		awsCfg, err := awsConfig(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "streamer ops redrive: %v\n", err)
			return exitFailed
		}
		lc := awslambda.NewFromConfig(awsCfg)
		dispatch = func(ctx context.Context, f ops.Failure) error {
			_, err := lc.Invoke(ctx, &awslambda.InvokeInput{
				FunctionName: aws.String(function), InvocationType: lambdatypes.InvocationTypeEvent, Payload: f.Job,
			})
			return err
		}
	}
	if rf.queueURL != "" {
		return redriveQueue(ctx, o, of, rf, dispatch, retryFailed, stdout, stderr)
	}
	var (
		in  []byte
		err error
	)
	if len(pos) == 0 || pos[0] == "-" {
		in, err = io.ReadAll(os.Stdin)
	} else {
		in, err = os.ReadFile(pos[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "streamer ops redrive: reading the messages: %v\n", err)
		return exitUsage
	}
	code := exitOK
	bodies := redriveBodies(in)
	if len(bodies) == 0 {
		fmt.Fprintln(stderr, "streamer ops redrive: no messages in the input")
		return exitUsage
	}
	for i, body := range bodies {
		res, err := o.Redrive(ctx, body, dispatch, retryFailed)
		if err != nil {
			fmt.Fprintf(stderr, "streamer ops redrive: message %d: %v\n", i+1, err)
			code = exitFailed
			continue
		}
		printRedrive(stdout, of.asJSON, i+1, "", res, "")
	}
	return code
}

// redriveQueue redrives the SQS queue rf names.
func redriveQueue(ctx context.Context, o *ops.Ops, of opsFlags, rf redriveFlags, dispatch ops.Dispatcher, retryFailed bool, stdout, stderr io.Writer) int {
	awsCfg, err := awsConfig(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "streamer ops redrive: %v\n", err)
		return exitFailed
	}
	q, err := sqsredrive.NewQueue(sqsredrive.QueueConfig{URL: rf.queueURL, AWS: awsCfg, Endpoint: sqsEndpoint(awsCfg)})
	if err != nil {
		fmt.Fprintf(stderr, "streamer ops redrive: --queue-url: %v\n", err)
		return exitUsage
	}
	code, n := exitOK, 0
	sum, err := sqsredrive.Run(ctx, sqsredrive.Config{
		Queue: q, Ops: o, Dispatch: dispatch, RetryFailed: retryFailed, DropMalformed: rf.dropMalformed, Max: rf.max,
		OnMessage: func(r sqsredrive.Result) {
			n++
			fate := "left on the queue"
			if r.Deleted {
				fate = "deleted"
			}
			if r.Err != nil {
				code = exitFailed
				fmt.Fprintf(stderr, "streamer ops redrive: message %d (%s): %v (%s)\n", n, r.MessageID, r.Err, fate)
				if of.asJSON {
					b, _ := json.Marshal(map[string]any{"message": n, "message_id": r.MessageID, "error": r.Err.Error(), "deleted": r.Deleted})
					fmt.Fprintln(stdout, string(b))
				}
				return
			}
			printRedrive(stdout, of.asJSON, n, r.MessageID, r.Redrive, fate)
		},
	})
	if err != nil {
		fmt.Fprintf(stderr, "streamer ops redrive: %v\n", err)
		code = exitFailed
	}
	if !of.asJSON && (err == nil || len(sum.Results) > 0) {
		fmt.Fprintf(stdout, "%d messages: %d deleted, %d left on the queue\n", len(sum.Results), sum.Deleted, sum.Left)
	}
	return code
}

// awsConfig is the AWS configuration of the environment, us-east-1 when
// it names no region.
func awsConfig(ctx context.Context) (aws.Config, error) {
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	return awsCfg, nil
}

// sqsEndpoint is the SQS endpoint the environment names, as the AWS SDK
// reads it: AWS_ENDPOINT_URL_SQS, else AWS_ENDPOINT_URL (awsCfg's
// BaseEndpoint); empty: the queue URL's host.
func sqsEndpoint(awsCfg aws.Config) string {
	if strings.EqualFold(os.Getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") {
		return ""
	}
	if e := os.Getenv("AWS_ENDPOINT_URL_SQS"); e != "" {
		return e
	}
	return aws.ToString(awsCfg.BaseEndpoint)
}

// printRedrive prints what redrive did with message n (its SQS id and
// fate, when it came from SQS).
func printRedrive(w io.Writer, asJSON bool, n int, id string, res ops.RedriveResult, fate string) {
	if asJSON {
		m := map[string]any{"message": n, "key": keyOrEmpty(res.Failure), "outcome": res.Outcome, "status": res.Status, "retry_id": res.RetryID}
		if id != "" {
			m["message_id"], m["deleted"] = id, fate == "deleted"
		}
		b, _ := json.Marshal(m)
		fmt.Fprintln(w, string(b))
		return
	}
	label := fmt.Sprintf("message %d", n)
	if id != "" {
		label = fmt.Sprintf("message %d (%s)", n, id)
	}
	if fate != "" {
		fate = " [" + fate + "]"
	}
	switch res.Outcome {
	case ops.OutcomeStreamBatch:
		fmt.Fprintf(w, "%s: a stream batch (%s): names no request; the reaper takes over its live requests%s\n", label, res.Failure.Condition, fate)
	case ops.OutcomeLive:
		fmt.Fprintf(w, "%s: %s: live (%s): left to the runtime (the reaper; --function invokes the processor now)%s\n", label, res.Failure.Key, res.Status, fate)
	case ops.OutcomeRetried:
		fmt.Fprintf(w, "%s: %s: failed: retried as %s%s\n", label, res.Failure.Key, res.RetryID, fate)
	default:
		fmt.Fprintf(w, "%s: %s: %s %s%s\n", label, res.Failure.Key, res.Outcome, res.Status, fate)
	}
}

func keyOrEmpty(f ops.Failure) string {
	if f.StreamBatch {
		return ""
	}
	return f.Key.String()
}
