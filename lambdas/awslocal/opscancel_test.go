package awslocal_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/cli"
	"github.com/streamer-go/streamer/lambdas/awslocal"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

// TestOpsCancelReachesTheClient: `streamer ops cancel --table` settles a
// request still queued (parked behind the principal's running limit) and
// posts its terminal event through the Management API: the client that
// sent it gets CANCELED at once, without resuming.
func TestOpsCancelReachesTheClient(t *testing.T) {
	t.Parallel()
	holds := newHoldPlugin()
	plugin := holds.plugin()
	local, table, info := startLocal(t, awslocal.Config{
		Plugins: []streamer.Plugin{plugin}, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel),
		Concurrency: 10, ReapInterval: -1, KeyConcurrency: 1,
	})
	t.Cleanup(func() { close(holds.release) })
	c := dial(t, info, "opsie")
	send(t, c, `{"action":"hold","id":"hold-1"}`)
	holds.waitRunning(t, 1, 3*lambdatest.Wait)
	send(t, c, `{"action":"hold","id":"hold-2"}`)
	for {
		m := lambdatest.Read(t, c)
		if m.Type == streamer.TypeAcknowledgment && m.RequestID == "hold-2" {
			require.Equal(t, "queued", m.Status)
			break
		}
	}

	// Wait until the processor has parked it (the stream record of its
	// insert is handled): a processor that sees a request finished
	// moments ago sends its terminal event again, which would hide a
	// cancel that posts nothing.
	key := map[string]types.AttributeValue{
		dynamodb.AttrPK: &types.AttributeValueMemberS{Value: "REQ#|opsie|hold-2"},
		dynamodb.AttrSK: &types.AttributeValueMemberS{Value: "REQ"},
	}
	require.Eventually(t, func() bool {
		out, err := local.DB.GetItem(t.Context(), &awsddb.GetItemInput{TableName: &table, Key: key, ConsistentRead: aws.Bool(true)})
		require.NoError(t, err)
		_, parked := out.Item["waiting_since"]
		return parked
	}, 3*lambdatest.Wait, 20*time.Millisecond, "hold-2 was not parked")

	var out, errOut bytes.Buffer
	plugins := func(context.Context, streamer.Env) ([]streamer.Plugin, error) { return []streamer.Plugin{plugin}, nil }
	code := cli.Run(t.Context(), []string{"ops", "cancel", "|opsie|hold-2", "--table", table, "--endpoint", info.ManagementURL}, &out, &errOut, plugins)
	require.Equal(t, 0, code, errOut.String())
	require.Equal(t, "hold-2: canceled\n", out.String())

	deadline := time.Now().Add(3 * lambdatest.Wait)
	for {
		require.True(t, time.Now().Before(deadline), "no terminal event for hold-2")
		m := lambdatest.Read(t, c)
		if m.RequestID != "hold-2" || m.Seq == 0 {
			continue
		}
		require.Equal(t, streamer.TypeError, m.Type, "%+v", m)
		require.Equal(t, streamer.CodeCanceled, m.Error.Code)
		break
	}
	require.Equal(t, int64(1), holds.peak.Load(), "hold-2 never ran")
}
