package dynamodb_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

// conflictAPI is a fake whose transactions collide with another transaction
// a number of times before they succeed or fail with the given error.
type conflictAPI struct {
	dynamodb.API // nil: calling anything else panics
	conflicts    int32
	final        error
	calls        atomic.Int32
}

func (f *conflictAPI) TransactWriteItems(_ context.Context, in *ddb.TransactWriteItemsInput, _ ...func(*ddb.Options)) (*ddb.TransactWriteItemsOutput, error) {
	n := f.calls.Add(1)
	if n <= f.conflicts {
		reasons := make([]types.CancellationReason, len(in.TransactItems))
		for i := range reasons {
			reasons[i].Code = aws.String("None")
		}
		reasons[0].Code = aws.String("TransactionConflict")
		return nil, &types.TransactionCanceledException{Message: aws.String("conflict"), CancellationReasons: reasons}
	}
	if f.final != nil {
		return nil, f.final
	}
	return &ddb.TransactWriteItemsOutput{}, nil
}

func TestTransactionConflictRetried(t *testing.T) {
	t.Parallel()
	k := storage.Key{Tenant: "t", Subject: "s", ID: "r"}
	ev := storage.Event{Seq: 3, Type: "progress"}

	t.Run("then succeeds", func(t *testing.T) {
		t.Parallel()
		api := &conflictAPI{conflicts: 3}
		s, err := dynamodb.New(dynamodb.Config{Client: api, Table: "streamer"})
		require.NoError(t, err)
		require.NoError(t, s.AppendEvent(t.Context(), k, 0, ev, 0))
		require.Equal(t, int32(4), api.calls.Load())
	})

	t.Run("then the seq is taken", func(t *testing.T) {
		t.Parallel()
		api := &conflictAPI{conflicts: 1, final: &types.TransactionCanceledException{CancellationReasons: []types.CancellationReason{
			{Code: aws.String("None")}, {Code: aws.String("ConditionalCheckFailed")},
		}}}
		s, err := dynamodb.New(dynamodb.Config{Client: api, Table: "streamer"})
		require.NoError(t, err)
		require.ErrorIs(t, s.AppendEvent(t.Context(), k, 0, ev, 0), storage.ErrConflict)
		require.Equal(t, int32(2), api.calls.Load())
	})

	t.Run("gives up", func(t *testing.T) {
		t.Parallel()
		api := &conflictAPI{conflicts: 1000}
		s, err := dynamodb.New(dynamodb.Config{Client: api, Table: "streamer"})
		require.NoError(t, err)
		err = s.FinishRequest(t.Context(), k, storage.Finish{Event: storage.Event{Seq: 1, Type: "complete"}, Status: storage.StatusSucceeded})
		require.Error(t, err)
		require.NotErrorIs(t, err, storage.ErrConflict)
		var canceled *types.TransactionCanceledException
		require.ErrorAs(t, err, &canceled, "the SDK error stays reachable")
		require.Equal(t, int32(10), api.calls.Load())
	})

	t.Run("honours ctx", func(t *testing.T) {
		t.Parallel()
		api := &conflictAPI{conflicts: 1000}
		s, err := dynamodb.New(dynamodb.Config{Client: api, Table: "streamer"})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		require.ErrorIs(t, s.AppendEvent(ctx, k, 0, ev, 0), context.Canceled)
		require.Equal(t, int32(1), api.calls.Load())
	})
}
