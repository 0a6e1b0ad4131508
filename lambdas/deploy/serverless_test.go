package deploy_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/plugins/report"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

// functions are the Lambdas (lambdaapp.Functions), named as in
// serverless.yml.
var functions = func() []string {
	out := make([]string, 0, len(lambdaapp.Functions))
	for _, fn := range lambdaapp.Functions {
		out = append(out, string(fn))
	}
	return out
}()

// routes maps each WebSocket route to the function behind it.
var routes = map[string]string{"$connect": "connect", "$disconnect": "disconnect", "$default": "router"}

// Logical ids of serverless.yml's resources and of those osls generates.
const (
	tableID  = "StreamerTable"
	apiID    = "WebsocketsApi"
	bucketID = "StreamerFilesBucket"
)

// functionID is osls's logical id of function fn's AWS::Lambda::Function.
func functionID(fn string) string { return strings.ToUpper(fn[:1]) + fn[1:] + "LambdaFunction" }

// wantEnv is every variable the Lambdas read (lambdas/lambdaapp) with the
// value serverless.yml gives it when the deploying shell sets none.
// STREAMER_ENDPOINT is left out: the router stores the endpoint of the
// event's domain and stage with each request.
func wantEnv() map[string]any {
	return map[string]any{
		"STREAMER_TABLE":                         map[string]any{"Ref": tableID},
		"STREAMER_BUCKET":                        map[string]any{"Ref": bucketID},
		"STREAMER_JWT_SECRET":                    "",
		"STREAMER_JWT_PUBLIC_KEY":                "",
		"STREAMER_JWT_JWKS_URL":                  "",
		"STREAMER_JWT_SECRET_SSM":                "",
		"STREAMER_JWT_SECRET_ARN":                "",
		"STREAMER_JWT_ALGORITHMS":                "",
		"STREAMER_JWT_ISSUER":                    "",
		"STREAMER_JWT_AUDIENCE":                  "",
		"STREAMER_LOG_LEVEL":                     "info",
		"STREAMER_RETENTION":                     "24h",
		"STREAMER_SYNC_THRESHOLD":                "5s",
		"STREAMER_SUBSCRIBER_REFRESH":            "0s",
		"STREAMER_CANCEL_POLL":                   "2s",
		"STREAMER_STALL_TIMEOUT":                 "2m",
		"STREAMER_MAX_STALLS":                    "3",
		"STREAMER_MAX_CONTINUATIONS":             "100",
		"STREAMER_MAX_CHECKPOINT":                "65536",
		"STREAMER_LEASE":                         "1m",
		"STREAMER_RATE_LIMIT":                    "",
		"STREAMER_MAX_PENDING":                   "1000",
		"STREAMER_KEY_CONCURRENCY":               "100",
		"STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL": "100",
		"STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL": "20/s,burst=100",
		"STREAMER_NEW_CONNECTIONS_PER_IP":        "100/s,burst=200",
		"STREAMER_TRACING":                       "off",
		"STREAMER_TRACE_CLIENT":                  "false",
		"STREAMER_METRICS_NAMESPACE":             "Streamer",
	}
}

// wantEnv names every variable lambdaapp reads, but STREAMER_ENDPOINT.
func TestWantEnvIsEveryVariable(t *testing.T) {
	t.Parallel()
	var names []string
	for name := range wantEnv() {
		names = append(names, name)
	}
	want := slices.DeleteFunc(slices.Clone(lambdaapp.EnvVars), func(v string) bool { return v == lambdaapp.EnvEndpoint })
	assert.ElementsMatch(t, want, names)
}

// TestServerlessTemplate packages serverless.yml and checks the generated
// template against the Go code and for least privilege.
func TestServerlessTemplate(t *testing.T) {
	t.Parallel()
	tpl := packageTemplate(t, nil)

	t.Run("table matches dynamodb.Schema", func(t *testing.T) { checkTable(t, tpl) })
	t.Run("websocket routes", func(t *testing.T) { checkRoutes(t, tpl) })
	t.Run("processor stream", func(t *testing.T) { checkStream(t, tpl) })
	t.Run("reaper schedule", func(t *testing.T) { checkSchedule(t, tpl) })
	t.Run("processor jobs", func(t *testing.T) { checkProcessorJobs(t, tpl) })
	t.Run("functions", func(t *testing.T) { checkFunctions(t, tpl, wantEnv()) })
	t.Run("log groups", func(t *testing.T) { checkLogGroups(t, tpl) })
	t.Run("iam", func(t *testing.T) { checkIAM(t, tpl, nil) })
	t.Run("files bucket", func(t *testing.T) { checkBucket(t, tpl) })
	t.Run("endpoint output", func(t *testing.T) {
		out, ok := tpl.Outputs["ServiceEndpointWebsocket"]
		require.True(t, ok, "no ServiceEndpointWebsocket output")
		assert.Equal(t, "wss://{"+apiID+"}.execute-api.{AWS::Region}.{AWS::URLSuffix}/"+stage, mustRender(t, out.Value))
	})
}

// TestServerlessEnvOverrides checks that the deploying shell's settings
// reach every function, a multi-line PEM key included.
func TestServerlessEnvOverrides(t *testing.T) {
	t.Parallel()
	pem := "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
	set := map[string]string{
		"STREAMER_JWT_PUBLIC_KEY": pem,
		"STREAMER_JWT_ALGORITHMS": "ES256",
		"STREAMER_JWT_ISSUER":     "https://issuer.example",
		"STREAMER_LOG_LEVEL":      "debug",
		"STREAMER_RETENTION":      "48h",
		"STREAMER_STALL_TIMEOUT":  "5m",
		"STREAMER_MAX_STALLS":     "2",
		"STREAMER_LEASE":          "30s",
	}
	tpl := packageTemplate(t, set)
	want := wantEnv()
	for k, v := range set {
		want[k] = v
	}
	checkFunctions(t, tpl, want)
}

// --- table ------------------------------------------------------------------

type cfnTable struct {
	TableName               string
	AttributeDefinitions    []cfnAttribute
	KeySchema               []cfnKey
	GlobalSecondaryIndexes  []cfnIndex
	LocalSecondaryIndexes   []cfnIndex
	BillingMode             string
	ProvisionedThroughput   *cfnThroughput
	StreamSpecification     *cfnStream
	TimeToLiveSpecification *cfnTTL
}

type cfnAttribute struct{ AttributeName, AttributeType string }

type cfnKey struct{ AttributeName, KeyType string }

type cfnIndex struct {
	IndexName             string
	KeySchema             []cfnKey
	Projection            cfnProjection
	ProvisionedThroughput *cfnThroughput
}

type cfnProjection struct {
	ProjectionType   string
	NonKeyAttributes []string
}

type cfnThroughput struct{ ReadCapacityUnits, WriteCapacityUnits int64 }

type cfnStream struct{ StreamViewType string }

type cfnTTL struct {
	AttributeName string
	Enabled       bool
}

// tableFromSchema writes a CreateTableInput as the template declares a
// table.
func tableFromSchema(in *ddb.CreateTableInput) cfnTable {
	keys := func(ks []types.KeySchemaElement) []cfnKey {
		out := make([]cfnKey, 0, len(ks))
		for _, k := range ks {
			out = append(out, cfnKey{aws.ToString(k.AttributeName), string(k.KeyType)})
		}
		return out
	}
	projection := func(p *types.Projection) cfnProjection {
		if p == nil {
			return cfnProjection{}
		}
		return cfnProjection{ProjectionType: string(p.ProjectionType), NonKeyAttributes: p.NonKeyAttributes}
	}
	throughput := func(p *types.ProvisionedThroughput) *cfnThroughput {
		if p == nil {
			return nil
		}
		return &cfnThroughput{aws.ToInt64(p.ReadCapacityUnits), aws.ToInt64(p.WriteCapacityUnits)}
	}
	tab := cfnTable{
		TableName:             aws.ToString(in.TableName),
		KeySchema:             keys(in.KeySchema),
		BillingMode:           string(in.BillingMode),
		ProvisionedThroughput: throughput(in.ProvisionedThroughput),
	}
	for _, a := range in.AttributeDefinitions {
		tab.AttributeDefinitions = append(tab.AttributeDefinitions, cfnAttribute{aws.ToString(a.AttributeName), string(a.AttributeType)})
	}
	for _, g := range in.GlobalSecondaryIndexes {
		tab.GlobalSecondaryIndexes = append(tab.GlobalSecondaryIndexes, cfnIndex{
			IndexName: aws.ToString(g.IndexName), KeySchema: keys(g.KeySchema),
			Projection: projection(g.Projection), ProvisionedThroughput: throughput(g.ProvisionedThroughput),
		})
	}
	for _, l := range in.LocalSecondaryIndexes {
		tab.LocalSecondaryIndexes = append(tab.LocalSecondaryIndexes, cfnIndex{
			IndexName: aws.ToString(l.IndexName), KeySchema: keys(l.KeySchema), Projection: projection(l.Projection),
		})
	}
	if s := in.StreamSpecification; s != nil && aws.ToBool(s.StreamEnabled) {
		tab.StreamSpecification = &cfnStream{StreamViewType: string(s.StreamViewType)}
	}
	return tab
}

// normalize orders what is a set (attribute definitions, indexes, non-key
// attributes) and fills CloudFormation's defaults, so that two equal tables
// compare equal. The key schema keeps its order: HASH comes first.
func (tab cfnTable) normalize() cfnTable {
	if tab.BillingMode == "" {
		tab.BillingMode = string(types.BillingModeProvisioned)
	}
	tab.TimeToLiveSpecification = nil
	sort.Slice(tab.AttributeDefinitions, func(i, j int) bool {
		return tab.AttributeDefinitions[i].AttributeName < tab.AttributeDefinitions[j].AttributeName
	})
	for _, idx := range [][]cfnIndex{tab.GlobalSecondaryIndexes, tab.LocalSecondaryIndexes} {
		sort.Slice(idx, func(i, j int) bool { return idx[i].IndexName < idx[j].IndexName })
		for i := range idx {
			idx[i].Projection.NonKeyAttributes = append([]string(nil), idx[i].Projection.NonKeyAttributes...)
			sort.Strings(idx[i].Projection.NonKeyAttributes)
		}
	}
	return tab
}

func checkTable(t *testing.T, tpl cfnTemplate) {
	var got cfnTable
	tpl.props(t, tableID, "AWS::DynamoDB::Table", &got)
	require.Equal(t, service+"-"+stage, got.TableName)

	want := tableFromSchema(dynamodb.Schema(got.TableName))
	require.NotEmpty(t, want.KeySchema)
	assert.Equal(t, want.normalize(), got.normalize(), "serverless.yml's %s differs from dynamodb.Schema", tableID)
	// Spelled out too, for a clearer failure.
	assert.ElementsMatch(t, want.AttributeDefinitions, got.AttributeDefinitions, "AttributeDefinitions")
	assert.Equal(t, want.KeySchema, got.KeySchema, "KeySchema")
	assert.Equal(t, want.BillingMode, got.BillingMode, "BillingMode")
	if assert.NotNil(t, got.StreamSpecification, "StreamSpecification") {
		assert.Equal(t, string(dynamodb.StreamViewType), got.StreamSpecification.StreamViewType)
	}
	assert.Equal(t, &cfnTTL{AttributeName: dynamodb.AttrTTL, Enabled: true}, got.TimeToLiveSpecification, "TimeToLiveSpecification")
}

// --- routes -----------------------------------------------------------------

func checkRoutes(t *testing.T, tpl cfnTemplate) {
	var api struct{ ProtocolType string }
	tpl.props(t, apiID, "AWS::ApiGatewayV2::Api", &api)
	assert.Equal(t, "WEBSOCKET", api.ProtocolType)

	got := map[string]string{} // route key -> function logical id
	for _, id := range tpl.ofType("AWS::ApiGatewayV2::Route") {
		var route struct {
			ApiId    any
			RouteKey string
			Target   any
		}
		tpl.props(t, id, "AWS::ApiGatewayV2::Route", &route)
		assert.Equal(t, "{"+apiID+"}", mustRender(t, route.ApiId), "ApiId of %s", id)
		target := mustRender(t, route.Target)
		integration, ok := strings.CutPrefix(target, "integrations/")
		require.True(t, ok, "target of %s is %q", id, target)
		integration = strings.Trim(integration, "{}")

		var integ struct {
			ApiId           any
			IntegrationType string
			IntegrationUri  any
		}
		tpl.props(t, integration, "AWS::ApiGatewayV2::Integration", &integ)
		assert.Equal(t, "AWS_PROXY", integ.IntegrationType)
		assert.Equal(t, "{"+apiID+"}", mustRender(t, integ.ApiId), "ApiId of %s", integration)
		uri := regexp.MustCompile(`/functions/\{([A-Za-z0-9]+)\.Arn\}/invocations$`).FindStringSubmatch(mustRender(t, integ.IntegrationUri))
		require.Len(t, uri, 2, "IntegrationUri of %s", integration)
		got[route.RouteKey] = uri[1]
	}
	want := map[string]string{}
	for key, fn := range routes {
		want[key] = functionID(fn)
	}
	assert.Equal(t, want, got, "route -> function")

	// API Gateway may invoke the three functions from this API only (and
	// EventBridge the reaper from its rule only: checkSchedule).
	wantSource := "arn:{AWS::Partition}:execute-api:{AWS::Region}:{AWS::AccountId}:{" + apiID + "}/*"
	invokable := map[string]bool{}
	for _, perm := range permissions(t, tpl) {
		if perm.Principal == "events.amazonaws.com" {
			continue
		}
		assert.Equal(t, "apigateway.amazonaws.com", perm.Principal, perm.id)
		assert.Equal(t, wantSource, perm.source, "SourceArn of %s", perm.id)
		invokable[perm.function] = true
	}
	for _, fn := range routes {
		assert.True(t, invokable[functionID(fn)], "no permission lets API Gateway invoke %s", fn)
	}
}

// permission is an AWS::Lambda::Permission, its references rendered.
type permission struct {
	id, function, source string
	Principal            string
}

// permissions lists the template's Lambda permissions; each lets a service
// invoke one function from one source.
func permissions(t *testing.T, tpl cfnTemplate) []permission {
	t.Helper()
	var out []permission
	for _, id := range tpl.ofType("AWS::Lambda::Permission") {
		var perm struct {
			FunctionName any
			Action       string
			Principal    string
			SourceArn    any
		}
		tpl.props(t, id, "AWS::Lambda::Permission", &perm)
		require.NotNil(t, perm.SourceArn, "%s has no SourceArn", id)
		assert.Equal(t, "lambda:InvokeFunction", perm.Action, id)
		out = append(out, permission{
			id: id, Principal: perm.Principal, source: mustRender(t, perm.SourceArn),
			function: strings.TrimSuffix(strings.Trim(mustRender(t, perm.FunctionName), "{}"), ".Arn"),
		})
	}
	return out
}

// --- reaper's schedule ------------------------------------------------------

// checkSchedule checks that one EventBridge rule runs the reaper once a
// minute, that EventBridge may invoke the reaper from that rule only, and
// that a failed run is not retried (the next run is).
func checkSchedule(t *testing.T, tpl cfnTemplate) {
	rules := tpl.ofType("AWS::Events::Rule")
	require.Len(t, rules, 1, "EventBridge rules")
	var rule struct {
		ScheduleExpression string
		State              string
		Targets            []struct{ Arn any }
	}
	tpl.props(t, rules[0], "AWS::Events::Rule", &rule)
	assert.Equal(t, "rate(1 minute)", rule.ScheduleExpression)
	assert.Equal(t, "ENABLED", rule.State)
	require.Len(t, rule.Targets, 1, "targets of %s", rules[0])
	assert.Equal(t, "{"+functionID("reaper")+".Arn}", mustRender(t, rule.Targets[0].Arn))

	var fromEvents []permission
	for _, p := range permissions(t, tpl) {
		if p.Principal == "events.amazonaws.com" {
			fromEvents = append(fromEvents, p)
		}
	}
	require.Len(t, fromEvents, 1, "permissions for EventBridge")
	assert.Equal(t, functionID("reaper"), fromEvents[0].function)
	assert.Equal(t, "{"+rules[0]+".Arn}", fromEvents[0].source, "only the rule may invoke the reaper")

	var conf struct {
		FunctionName         any
		MaximumRetryAttempts *int
	}
	found := false
	for _, id := range tpl.ofType("AWS::Lambda::EventInvokeConfig") {
		tpl.props(t, id, "AWS::Lambda::EventInvokeConfig", &conf)
		if found = mustRender(t, conf.FunctionName) == "{"+functionID("reaper")+"}"; found {
			break
		}
	}
	require.True(t, found, "no event invoke config for the reaper")
	if assert.NotNil(t, conf.MaximumRetryAttempts) {
		assert.Zero(t, *conf.MaximumRetryAttempts, "a failed run is retried by the next one")
	}
}

// processorARN is the processor function's ARN as the role's policy renders
// it (a name, not a reference: the function depends on the role).
const processorARN = "arn:{AWS::Partition}:lambda:{AWS::Region}:{AWS::AccountId}:function:" + service + "-" + stage + "-processor"

// checkProcessorJobs checks the processor's async invoke configuration: its
// jobs (asynchronous invocations of itself) are retried twice, wait in
// Lambda's queue at most 6 hours, and then go to the failure queue.
func checkProcessorJobs(t *testing.T, tpl cfnTemplate) {
	var conf struct {
		FunctionName             any
		MaximumRetryAttempts     *int
		MaximumEventAgeInSeconds *int
		DestinationConfig        struct {
			OnFailure struct{ Destination any }
		}
	}
	found := false
	for _, id := range tpl.ofType("AWS::Lambda::EventInvokeConfig") {
		tpl.props(t, id, "AWS::Lambda::EventInvokeConfig", &conf)
		if mustRender(t, conf.FunctionName) == "{"+functionID("processor")+"}" {
			found = true
			break
		}
	}
	require.True(t, found, "no event invoke config for the processor")
	if assert.NotNil(t, conf.MaximumRetryAttempts) {
		assert.Equal(t, 2, *conf.MaximumRetryAttempts)
	}
	if assert.NotNil(t, conf.MaximumEventAgeInSeconds) {
		assert.Equal(t, 21600, *conf.MaximumEventAgeInSeconds)
	}
	assert.Equal(t, "{"+deadLetterQueue(t, tpl)+".Arn}", mustRender(t, conf.DestinationConfig.OnFailure.Destination), "failed jobs go to the failure queue")
	var fn struct{ Timeout int }
	tpl.props(t, functionID("processor"), "AWS::Lambda::Function", &fn)
	assert.Equal(t, 900, fn.Timeout)
}

// --- processor's stream -----------------------------------------------------

type cfnEventSourceMapping struct {
	BatchSize                  int
	Enabled                    bool
	EventSourceArn             any
	FunctionName               any
	StartingPosition           string
	MaximumRetryAttempts       *int
	BisectBatchOnFunctionError bool
	ParallelizationFactor      int
	FunctionResponseTypes      []string
	DestinationConfig          struct{ OnFailure struct{ Destination any } }
	FilterCriteria             struct{ Filters []struct{ Pattern string } }
}

// deadLetterQueue returns the logical id of the queue the processor's
// failed batches go to.
func deadLetterQueue(t *testing.T, tpl cfnTemplate) string {
	t.Helper()
	esm := eventSourceMapping(t, tpl)
	dest := mustRender(t, esm.DestinationConfig.OnFailure.Destination)
	queue, ok := strings.CutSuffix(strings.Trim(dest, "{}"), ".Arn")
	require.True(t, ok, "on-failure destination %q is not a GetAtt of an Arn", dest)
	var props struct{ QueueName string }
	tpl.props(t, queue, "AWS::SQS::Queue", &props)
	return queue
}

func eventSourceMapping(t *testing.T, tpl cfnTemplate) cfnEventSourceMapping {
	t.Helper()
	ids := tpl.ofType("AWS::Lambda::EventSourceMapping")
	require.Len(t, ids, 1, "event source mappings")
	var esm cfnEventSourceMapping
	tpl.props(t, ids[0], "AWS::Lambda::EventSourceMapping", &esm)
	return esm
}

func checkStream(t *testing.T, tpl cfnTemplate) {
	esm := eventSourceMapping(t, tpl)
	assert.Equal(t, "{"+functionID("processor")+".Arn}", mustRender(t, esm.FunctionName))
	assert.Equal(t, "{"+tableID+".StreamArn}", mustRender(t, esm.EventSourceArn))
	assert.True(t, esm.Enabled)
	assert.Equal(t, 10, esm.BatchSize)
	assert.Equal(t, "LATEST", esm.StartingPosition)
	assert.True(t, esm.BisectBatchOnFunctionError)
	assert.Equal(t, 10, esm.ParallelizationFactor, "a long request must not hold up its shard")
	if assert.NotNil(t, esm.MaximumRetryAttempts) {
		assert.Equal(t, 3, *esm.MaximumRetryAttempts)
	}
	assert.Equal(t, []string{"ReportBatchItemFailures"}, esm.FunctionResponseTypes)
	deadLetterQueue(t, tpl)

	require.Len(t, esm.FilterCriteria.Filters, 1, "filters")
	raw := esm.FilterCriteria.Filters[0].Pattern
	assert.JSONEq(t, dynamodb.StreamFilterPattern, raw, "the filter must be dynamodb.StreamFilterPattern")
	var pattern map[string]any
	require.NoError(t, json.Unmarshal([]byte(raw), &pattern))
	checkFilter(t, pattern)
}

// checkFilter runs the stream filter over records of every kind of item
// and checks that it passes exactly those of newly queued requests, and
// that it agrees with dynamodb.QueuedRequest (the local poller's filter).
func checkFilter(t *testing.T, pattern map[string]any) {
	key := storage.Key{Tenant: "acme", Subject: "alice", ID: "r-42"}
	pk := "REQ#" + key.String() // dynamodb.QueuedRequest checks this form
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	n := func(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }
	request := func(st storage.Status) map[string]types.AttributeValue {
		return map[string]types.AttributeValue{
			dynamodb.AttrPK: s(pk), dynamodb.AttrSK: s("REQ"), "status": s(string(st)),
			"action": s("report"), "attempt": n("1"), dynamodb.AttrTTL: n("1700000000"),
		}
	}
	event := map[string]types.AttributeValue{
		dynamodb.AttrPK: s(pk), dynamodb.AttrSK: s("EV#00000000000000000001"), "type": s("progress"), "seq": n("1"),
	}
	subscription := map[string]types.AttributeValue{dynamodb.AttrPK: s(pk), dynamodb.AttrSK: s("SUB#conn-1")}
	connection := map[string]types.AttributeValue{dynamodb.AttrPK: s("CONN#conn-1"), dynamodb.AttrSK: s("CONN"), "conn_id": s("conn-1")}

	type record struct {
		name          string
		eventName     string
		oldImg, image map[string]types.AttributeValue
		want          bool
	}
	records := []record{
		{"new request", "INSERT", nil, request(storage.StatusQueued), true},
		{"re-queued request", "MODIFY", request(storage.StatusRunning), request(storage.StatusQueued), true},
		{"expired queued request", "REMOVE", request(storage.StatusQueued), nil, false},
		{"event", "INSERT", nil, event, false},
		{"subscription", "INSERT", nil, subscription, false},
		{"connection", "INSERT", nil, connection, false},
		{"connection update", "MODIFY", connection, connection, false},
	}
	for _, st := range []storage.Status{storage.StatusRunning, storage.StatusCanceling,
		storage.StatusSucceeded, storage.StatusFailed, storage.StatusCanceled} {
		records = append(records,
			record{"inserted " + string(st) + " request", "INSERT", nil, request(st), false},
			record{"request now " + string(st), "MODIFY", request(storage.StatusQueued), request(st), false})
	}

	for _, r := range records {
		t.Run(r.name, func(t *testing.T) {
			rec := map[string]any{"eventName": r.eventName, "eventSource": "aws:dynamodb", "dynamodb": map[string]any{}}
			ddbPart := rec["dynamodb"].(map[string]any)
			ddbPart["Keys"] = imageJSON(t, map[string]types.AttributeValue{
				dynamodb.AttrPK: firstImage(r.image, r.oldImg)[dynamodb.AttrPK],
				dynamodb.AttrSK: firstImage(r.image, r.oldImg)[dynamodb.AttrSK],
			})
			if r.image != nil {
				ddbPart["NewImage"] = imageJSON(t, r.image)
			}
			if r.oldImg != nil {
				ddbPart["OldImage"] = imageJSON(t, r.oldImg)
			}
			got, err := matches(pattern, rec)
			require.NoError(t, err)
			assert.Equal(t, r.want, got, "filter on %s", r.name)

			if r.image != nil {
				k, queued, err := dynamodb.QueuedRequest(r.image)
				require.NoError(t, err)
				assert.Equal(t, queued, got, "the filter and dynamodb.QueuedRequest disagree")
				if queued {
					assert.Equal(t, key, k)
				}
			}
		})
	}
}

func firstImage(imgs ...map[string]types.AttributeValue) map[string]types.AttributeValue {
	for _, img := range imgs {
		if img != nil {
			return img
		}
	}
	return nil
}

// imageJSON writes an item as a stream record's image in Lambda's event
// (DynamoDB JSON), through encoding/json as Lambda's filter sees it.
func imageJSON(t *testing.T, img map[string]types.AttributeValue) map[string]any {
	t.Helper()
	out := map[string]any{}
	for name, v := range img {
		switch x := v.(type) {
		case *types.AttributeValueMemberS:
			out[name] = map[string]string{"S": x.Value}
		case *types.AttributeValueMemberN:
			out[name] = map[string]string{"N": x.Value}
		default:
			t.Fatalf("imageJSON: attribute %s: unsupported %T", name, v)
		}
	}
	data, err := json.Marshal(out)
	require.NoError(t, err)
	var back map[string]any
	require.NoError(t, json.Unmarshal(data, &back))
	return back
}

// matches evaluates a Lambda event filter pattern (EventBridge syntax) on a
// record. It supports the exact-value form: nested objects whose leaves are
// arrays of allowed strings, numbers, booleans or null. Any other operator
// (prefix, anything-but, exists, numeric, ...) is an error, so a changed
// pattern is not silently mis-evaluated.
func matches(pattern, record map[string]any) (bool, error) {
	// Check every operator first: an unsupported one is an error even where
	// an earlier field already fails to match.
	if err := supported(pattern); err != nil {
		return false, err
	}
	return match(pattern, record), nil
}

func supported(pattern map[string]any) error {
	for field, want := range pattern {
		switch w := want.(type) {
		case map[string]any:
			if err := supported(w); err != nil {
				return fmt.Errorf("%s.%w", field, err)
			}
		case []any:
			if len(w) == 0 {
				return fmt.Errorf("%s: empty array", field)
			}
			for _, v := range w {
				switch v.(type) {
				case string, float64, bool, nil:
				default:
					return fmt.Errorf("%s: unsupported filter operator %v", field, v)
				}
			}
		default:
			return fmt.Errorf("%s: %T is neither an object nor an array", field, want)
		}
	}
	return nil
}

func match(pattern, record map[string]any) bool {
	for field, want := range pattern {
		got, ok := record[field]
		if !ok {
			return false
		}
		switch w := want.(type) {
		case map[string]any:
			sub, ok := got.(map[string]any)
			if !ok || !match(w, sub) {
				return false
			}
		case []any:
			values, isArray := got.([]any)
			if !isArray {
				values = []any{got}
			}
			if !anyEqual(w, values) {
				return false
			}
		}
	}
	return true
}

// anyEqual reports whether one of values is one of allowed (scalars).
func anyEqual(allowed, values []any) bool {
	for _, v := range values {
		for _, a := range allowed {
			if v == a {
				return true
			}
		}
	}
	return false
}

// --- functions --------------------------------------------------------------

type cfnFunction struct {
	FunctionName  string
	Handler       string
	Runtime       string
	Architectures []string
	MemorySize    int
	Timeout       int
	TracingConfig struct{ Mode string }
	Environment   struct{ Variables map[string]any }
	Role          any
	Code          struct{ S3Key any }
}

func checkFunctions(t *testing.T, tpl cfnTemplate, env map[string]any) {
	ids := tpl.ofType("AWS::Lambda::Function")
	want := make([]string, 0, len(functions))
	for _, fn := range functions {
		want = append(want, functionID(fn))
	}
	sort.Strings(want)
	require.Equal(t, want, ids, "Lambda functions")

	for _, name := range functions {
		t.Run(name, func(t *testing.T) {
			var fn cfnFunction
			tpl.props(t, functionID(name), "AWS::Lambda::Function", &fn)
			assert.Equal(t, service+"-"+stage+"-"+name, fn.FunctionName)
			assert.Equal(t, "bootstrap", fn.Handler)
			assert.Equal(t, "provided.al2023", fn.Runtime)
			assert.Equal(t, []string{"arm64"}, fn.Architectures)
			assert.Equal(t, "Active", fn.TracingConfig.Mode, "X-Ray tracing")
			assert.Equal(t, env, fn.Environment.Variables)
			assert.True(t, strings.HasSuffix(mustRender(t, fn.Code.S3Key), "/"+name+".zip"), "code %v", fn.Code.S3Key)
			assert.Positive(t, fn.MemorySize)
			switch name {
			case "processor":
				assert.Equal(t, 900, fn.Timeout, "the processor gets Lambda's longest timeout")
			case "reaper":
				// Less than the schedule's period: runs do not pile up.
				assert.Positive(t, fn.Timeout)
				assert.LessOrEqual(t, fn.Timeout, 60)
			default:
				// API Gateway gives up on an integration after 29 s.
				assert.Positive(t, fn.Timeout)
				assert.LessOrEqual(t, fn.Timeout, 29)
			}
			role := mustRender(t, fn.Role)
			require.Regexp(t, `^\{[A-Za-z0-9]+\.Arn\}$`, role, "the role is one of the stack's")
			var r cfnRole
			tpl.props(t, strings.TrimSuffix(strings.Trim(role, "{}"), ".Arn"), "AWS::IAM::Role", &r)
		})
	}
}

func checkLogGroups(t *testing.T, tpl cfnTemplate) {
	byName := map[string]int{}
	for _, id := range tpl.ofType("AWS::Logs::LogGroup") {
		var lg struct {
			LogGroupName    string
			RetentionInDays int
		}
		tpl.props(t, id, "AWS::Logs::LogGroup", &lg)
		byName[lg.LogGroupName] = lg.RetentionInDays
	}
	want := map[string]int{}
	for _, fn := range functions {
		want["/aws/lambda/"+service+"-"+stage+"-"+fn] = 14
	}
	assert.Equal(t, want, byName, "log group -> retention in days")
}

// --- IAM --------------------------------------------------------------------

type cfnRole struct {
	AssumeRolePolicyDocument cfnPolicy
	ManagedPolicyArns        []any
	Policies                 []struct{ PolicyDocument cfnPolicy }
}

// cfnPolicy is a policy document; its statements may be Fn::If of one
// (see statements).
type cfnPolicy struct{ Statement []any }

type cfnStatement struct {
	Effect      string
	Action      any
	NotAction   any
	Resource    any
	NotResource any
	Condition   map[string]map[string]any
}

// statements are the statements of p as deployed: an Fn::If is resolved by
// the template's conditions, and dropped when it gives AWS::NoValue.
func (tpl cfnTemplate) statements(t *testing.T, p cfnPolicy) []cfnStatement {
	t.Helper()
	var out []cfnStatement
	for _, raw := range p.Statement {
		v, ok := tpl.resolveIf(t, raw)
		if !ok {
			continue
		}
		b, err := json.Marshal(v)
		require.NoError(t, err)
		var st cfnStatement
		require.NoError(t, json.Unmarshal(b, &st))
		out = append(out, st)
	}
	return out
}

// secretGrants are the grants of the JWT secret's parameter or secret
// that serverless.yml adds when the deploying shell names one: action ->
// every resource it is granted on (kms:Decrypt: the account's keys, on the
// condition that SSM or Secrets Manager asks for that parameter or secret).
type secretGrants map[string][]string

// kmsKeys is the resource of kms:Decrypt: the keys of the stack's account
// and region, narrowed by the statement's conditions.
const kmsKeys = "arn:{AWS::Partition}:kms:{AWS::Region}:{AWS::AccountId}:key/*"

// The actions the Lambdas need, each on the resources they may act on.
var (
	tableActions = []string{
		"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
		"dynamodb:Query", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem",
		"dynamodb:DescribeTable",
	}
	streamActions = []string{
		"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams",
	}
	tableResources = []string{"{" + tableID + ".Arn}", "{" + tableID + ".Arn}/index/*"}
	// The report plugin writes its files and presigns their GETs.
	bucketActions  = []string{"s3:PutObject", "s3:GetObject"}
	bucketResource = "{" + bucketID + ".Arn}/*"
	streamResource = "{" + tableID + ".StreamArn}"
	// Sending to and closing connections of this API's stage.
	manageConnections = regexp.MustCompile(`^arn:\{AWS::Partition\}:execute-api:\{AWS::Region\}:\{AWS::AccountId\}:\{` +
		apiID + `\}/` + stage + `/(POST|DELETE)/@connections/\*$`)
)

// checkIAM checks the role's policy for least privilege: secrets lists the
// grants of the JWT secret's parameter or secret expected (none when nil).
func checkIAM(t *testing.T, tpl cfnTemplate, secrets secretGrants) {
	// Every grant lives in a role's inline policy, where this test sees it.
	for _, typ := range []string{"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::User", "AWS::IAM::Group"} {
		assert.Empty(t, tpl.ofType(typ), "resources of type %s", typ)
	}
	roles := tpl.ofType("AWS::IAM::Role")
	require.NotEmpty(t, roles)

	grants := map[string]map[string]bool{} // action -> resources
	for _, id := range roles {
		var role cfnRole
		tpl.props(t, id, "AWS::IAM::Role", &role)
		assert.Empty(t, role.ManagedPolicyArns, "%s attaches managed policies", id)
		for _, p := range role.Policies {
			for i, st := range tpl.statements(t, p.PolicyDocument) {
				where := fmt.Sprintf("%s statement %d", id, i)
				assert.Equal(t, "Allow", st.Effect, where)
				assert.Nil(t, st.NotAction, where)
				assert.Nil(t, st.NotResource, where)
				require.NotNil(t, st.Action, where)
				require.NotNil(t, st.Resource, where)
				resources := renderAll(t, st.Resource)
				for _, action := range renderAll(t, st.Action) {
					assert.NotContains(t, action, "*", "%s: wildcard action", where)
					if action == "kms:Decrypt" {
						checkDecryptCondition(t, where, st, secrets)
					} else {
						assert.Empty(t, st.Condition, "%s: %s has conditions", where, action)
					}
					if grants[action] == nil {
						grants[action] = map[string]bool{}
					}
					for _, res := range resources {
						grants[action][res] = true
					}
				}
			}
		}
	}

	dlq := "{" + deadLetterQueue(t, tpl) + ".Arn}"
	for action, resources := range grants {
		svc, _, _ := strings.Cut(action, ":")
		for res := range resources {
			switch {
			case slices.Contains(tableActions, action):
				assert.Contains(t, tableResources, res, "%s on %s: only the table and its indexes", action, res)
			case slices.Contains(streamActions, action):
				assert.Equal(t, streamResource, res, "%s on %s: only the table's stream", action)
			case action == "execute-api:ManageConnections":
				assert.Regexp(t, manageConnections, res, "%s: only this API's connections", action)
			case action == "sqs:SendMessage":
				assert.Equal(t, dlq, res, "%s: only the dead-letter queue", action)
			case action == "lambda:InvokeFunction":
				assert.Equal(t, processorARN, res, "%s: only the processor (which invokes itself)", action)
			case slices.Contains(bucketActions, action):
				assert.Equal(t, bucketResource, res, "%s: only the files bucket's objects", action)
			case secrets[action] != nil:
				assert.Contains(t, secrets[action], res, "%s on %s: only the JWT secret", action, res)
			case svc == "dynamodb" || svc == "execute-api" || svc == "sqs" || svc == "lambda" || svc == "s3" ||
				svc == "ssm" || svc == "secretsmanager" || svc == "kms":
				t.Errorf("unexpected grant of %s on %s", action, res)
			case svc == "xray":
				// X-Ray has no resource-level permissions.
			default:
				assert.NotEqual(t, "*", res, "%s on every resource", action)
			}
		}
	}

	// ... and everything needed is granted.
	for _, action := range tableActions {
		assert.True(t, grants[action][tableResources[0]], "%s on the table is not granted", action)
	}
	for _, action := range streamActions {
		assert.True(t, grants[action][streamResource], "%s on the stream is not granted", action)
	}
	assert.True(t, grants["sqs:SendMessage"][dlq], "sqs:SendMessage on the dead-letter queue is not granted")
	assert.True(t, grants["lambda:InvokeFunction"][processorARN], "lambda:InvokeFunction on the processor is not granted")
	for _, action := range bucketActions {
		assert.True(t, grants[action][bucketResource], "%s on %s is not granted", action, bucketResource)
	}
	for action, resources := range secrets {
		for _, res := range resources {
			assert.True(t, grants[action][res], "%s on %s is not granted", action, res)
		}
	}
	methods := map[string]bool{}
	for res := range grants["execute-api:ManageConnections"] {
		if m := manageConnections.FindStringSubmatch(res); m != nil {
			methods[m[1]] = true
		}
	}
	assert.Equal(t, map[string]bool{"POST": true, "DELETE": true}, methods, "execute-api:ManageConnections methods")
	for _, action := range []string{"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords"} {
		assert.NotEmpty(t, grants[action], "%s is not granted", action)
	}
}

// checkDecryptCondition checks that a kms:Decrypt statement holds only
// through the service that keeps the JWT secret, for that parameter or
// secret: a condition on kms:ViaService and on the encryption context,
// whose values are the parameter's or secret's resources.
func checkDecryptCondition(t *testing.T, where string, st cfnStatement, secrets secretGrants) {
	t.Helper()
	var via, svc string
	var context []string
	for op, keys := range st.Condition {
		for key, v := range keys {
			switch {
			case key == "kms:ViaService":
				assert.Equal(t, "StringEquals", op, where)
				via = mustRender(t, v)
			case strings.HasPrefix(key, "kms:EncryptionContext:"):
				context = append(context, renderAll(t, v)...)
			default:
				t.Errorf("%s: unexpected condition %s %s", where, op, key)
			}
		}
	}
	switch via {
	case "ssm.{AWS::Region}.amazonaws.com":
		svc = "ssm:GetParameter"
	case "secretsmanager.{AWS::Region}.amazonaws.com":
		svc = "secretsmanager:GetSecretValue"
	default:
		t.Errorf("%s: kms:Decrypt through %q", where, via)
		return
	}
	require.NotEmpty(t, context, "%s: kms:Decrypt without an encryption context condition", where)
	assert.ElementsMatch(t, secrets[svc], context, "%s: kms:Decrypt for the JWT secret only", where)
}

// TestServerlessSecretGrants: when the deploying shell names the JWT
// secret's SSM parameter or Secrets Manager secret, the role may read that
// one (by name or ARN) and decrypt it through that service, and nothing
// else of SSM, Secrets Manager or KMS.
func TestServerlessSecretGrants(t *testing.T) {
	t.Parallel()
	const (
		ssm = "arn:{AWS::Partition}:ssm:{AWS::Region}:{AWS::AccountId}:parameter"
		sm  = "arn:{AWS::Partition}:secretsmanager:{AWS::Region}:{AWS::AccountId}:secret:"
	)
	cases := []struct {
		name string
		env  map[string]string
		want secretGrants
	}{
		{"ssm path", map[string]string{"STREAMER_JWT_SECRET_SSM": "/myapp/jwt-secret"}, secretGrants{
			"ssm:GetParameter": {ssm + "/myapp/jwt-secret", ssm + "//myapp/jwt-secret"},
			"kms:Decrypt":      {kmsKeys},
		}},
		{"ssm name", map[string]string{"STREAMER_JWT_SECRET_SSM": "jwt-secret"}, secretGrants{
			"ssm:GetParameter": {ssm + "/jwt-secret", ssm + "jwt-secret"},
			"kms:Decrypt":      {kmsKeys},
		}},
		{"secret arn", map[string]string{"STREAMER_JWT_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/jwt-AbCdEf"}, secretGrants{
			"secretsmanager:GetSecretValue": {sm + "prod/jwt-AbCdEf", sm + "prod/jwt-AbCdEf-??????"},
			"kms:Decrypt":                   {kmsKeys},
		}},
		{"secret name", map[string]string{"STREAMER_JWT_SECRET_ARN": "prod/jwt"}, secretGrants{
			"secretsmanager:GetSecretValue": {sm + "prod/jwt", sm + "prod/jwt-??????"},
			"kms:Decrypt":                   {kmsKeys},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tpl := packageTemplate(t, tc.env)
			checkIAM(t, tpl, tc.want)
			want := wantEnv()
			for k, v := range tc.env {
				want[k] = v
			}
			checkFunctions(t, tpl, want)
		})
	}
}

// --- files bucket -----------------------------------------------------------

// checkBucket checks the report plugin's bucket: private, encrypted, HTTPS
// only, and its reports deleted by a lifecycle rule no sooner than a
// request's default retention.
func checkBucket(t *testing.T, tpl cfnTemplate) {
	var b struct {
		BucketName       any
		BucketEncryption struct {
			ServerSideEncryptionConfiguration []struct {
				ServerSideEncryptionByDefault struct{ SSEAlgorithm string }
			}
		}
		PublicAccessBlockConfiguration struct {
			BlockPublicAcls, BlockPublicPolicy, IgnorePublicAcls, RestrictPublicBuckets bool
		}
		OwnershipControls struct {
			Rules []struct{ ObjectOwnership string }
		}
		VersioningConfiguration *struct{ Status string }
		LifecycleConfiguration  struct {
			Rules []struct {
				Status           string
				Prefix           string
				ExpirationInDays int
				TagFilters       []any
			}
		}
	}
	tpl.props(t, bucketID, "AWS::S3::Bucket", &b)
	assert.Nil(t, b.BucketName, "CloudFormation names the bucket (names are global)")
	require.NotEmpty(t, b.BucketEncryption.ServerSideEncryptionConfiguration)
	assert.Contains(t, []string{"AES256", "aws:kms"}, b.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm)
	p := b.PublicAccessBlockConfiguration
	assert.True(t, p.BlockPublicAcls && p.BlockPublicPolicy && p.IgnorePublicAcls && p.RestrictPublicBuckets, "all public access blocked: %+v", p)
	if assert.Len(t, b.OwnershipControls.Rules, 1) {
		assert.Equal(t, "BucketOwnerEnforced", b.OwnershipControls.Rules[0].ObjectOwnership, "no ACLs")
	}
	if b.VersioningConfiguration != nil {
		assert.NotEqual(t, "Enabled", b.VersioningConfiguration.Status, "versions would outlive the lifecycle rule")
	}

	// The report plugin's prefix expires, after at least the retention.
	found := false
	for _, r := range b.LifecycleConfiguration.Rules {
		if r.Status == "Enabled" && r.ExpirationInDays > 0 && len(r.TagFilters) == 0 && strings.HasPrefix(report.DefaultPrefix, r.Prefix) {
			found = true
			assert.GreaterOrEqual(t, time.Duration(r.ExpirationInDays)*24*time.Hour, streamer.DefaultRetention,
				"objects must outlive their URLs (the default retention)")
			assert.LessOrEqual(t, r.ExpirationInDays, 7, "and not be kept much longer than the longest URL")
		}
	}
	assert.True(t, found, "no enabled lifecycle rule expires %s", report.DefaultPrefix)

	// HTTPS only, for everyone.
	var pol struct {
		Bucket         any
		PolicyDocument struct {
			Statement []struct {
				Effect    string
				Principal any
				Action    any
				Resource  any
				Condition map[string]map[string]any
			}
		}
	}
	found = false
	for _, id := range tpl.ofType("AWS::S3::BucketPolicy") {
		tpl.props(t, id, "AWS::S3::BucketPolicy", &pol)
		if found = mustRender(t, pol.Bucket) == "{"+bucketID+"}"; found {
			break
		}
	}
	require.True(t, found, "no policy of the files bucket")
	for _, st := range pol.PolicyDocument.Statement {
		assert.Equal(t, "Deny", st.Effect, "the bucket policy only denies; grants are the role's")
	}
	require.NotEmpty(t, pol.PolicyDocument.Statement)
	assert.Equal(t, "false", pol.PolicyDocument.Statement[0].Condition["Bool"]["aws:SecureTransport"])

	out, ok := tpl.Outputs["StreamerFilesBucketName"]
	require.True(t, ok, "no StreamerFilesBucketName output")
	assert.Equal(t, "{"+bucketID+"}", mustRender(t, out.Value))
}
