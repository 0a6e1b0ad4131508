package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The table's schema. Deployment templates (serverless.yml) must describe
// the same table as [Schema].
const (
	// AttrPK is the partition key attribute (a string).
	AttrPK = "pk"
	// AttrSK is the sort key attribute (a string).
	AttrSK = "sk"
	// AttrTTL is the table's TTL attribute: an item's expiry in epoch
	// seconds, set on every item that has an ExpiresAt.
	AttrTTL = "ttl"
	// IndexStatus is the table's global secondary index of request items
	// by status and time (the other is [IndexPrincipal]). Its partition key is [AttrStatusShard], its sort
	// key [AttrStatusTime]; it projects the table's keys, action and
	// expires_at. Only request items have the two attributes, so events,
	// subscriptions and connections are not in it and cost it nothing.
	IndexStatus = "status-time"
	// AttrStatusShard is the index's partition key (a string): the
	// request's status, "#" and its shard, two digits from 00 to
	// [StatusShards]-1 derived from a hash of the request's key, for
	// example "running#07". The shards spread one status over several
	// partitions, so that no status is a hot partition of the index.
	AttrStatusShard = "status_shard"
	// AttrStatusTime is the index's sort key (a number, epoch
	// milliseconds): when a live request is due (NotBefore of a queued
	// one, or its CreatedAt when later; LeaseUntil of a running or
	// canceling one) and when a finished
	// one finished (its UpdatedAt). A zero time is stored as the zero
	// time's epoch milliseconds, below every real time.
	AttrStatusTime = "status_time"
	// StatusShards is the number of shards of each status in [IndexStatus].
	StatusShards = 16
	// StreamViewType is the view type of the table's stream: consumers see
	// each change's item before and after, so they can tell status
	// transitions apart.
	StreamViewType = types.StreamViewTypeNewAndOldImages
)

// Schema describes the table Streamer needs, named table: string keys
// [AttrPK] and [AttrSK], on-demand billing, a stream of [StreamViewType]
// and the global secondary indexes [IndexStatus] and [IndexPrincipal]. The TTL attribute
// ([AttrTTL]) is not part of CreateTableInput; [CreateTable] enables it.
//
// Schema is plain data, so a test can compare a deployment template against
// it. Each call returns a fresh value the caller may modify.
func Schema(table string) *ddb.CreateTableInput {
	return &ddb.CreateTableInput{
		TableName: aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(AttrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrSK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrStatusShard), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrStatusTime), AttributeType: types.ScalarAttributeTypeN},
			{AttributeName: aws.String(AttrPrincipalKey), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrPrincipalTime), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(AttrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(AttrSK), KeyType: types.KeyTypeRange},
		},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName: aws.String(IndexStatus),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(AttrStatusShard), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(AttrStatusTime), KeyType: types.KeyTypeRange},
			},
			// Both are set when the request is created and never change,
			// so projecting them adds no index write.
			Projection: &types.Projection{
				ProjectionType:   types.ProjectionTypeInclude,
				NonKeyAttributes: []string{attrAction, attrExpiresAt},
			},
		}, principalIndex()},
		BillingMode: types.BillingModePayPerRequest,
		StreamSpecification: &types.StreamSpecification{
			StreamEnabled:  aws.Bool(true),
			StreamViewType: StreamViewType,
		},
	}
}

// TableAPI is the part of *dynamodb.Client that [CreateTable] uses.
type TableAPI interface {
	CreateTable(ctx context.Context, in *ddb.CreateTableInput, optFns ...func(*ddb.Options)) (*ddb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *ddb.DescribeTableInput, optFns ...func(*ddb.Options)) (*ddb.DescribeTableOutput, error)
	UpdateTimeToLive(ctx context.Context, in *ddb.UpdateTimeToLiveInput, optFns ...func(*ddb.Options)) (*ddb.UpdateTimeToLiveOutput, error)
	DescribeTimeToLive(ctx context.Context, in *ddb.DescribeTimeToLiveInput, optFns ...func(*ddb.Options)) (*ddb.DescribeTimeToLiveOutput, error)
	UpdateTable(ctx context.Context, in *ddb.UpdateTableInput, optFns ...func(*ddb.Options)) (*ddb.UpdateTableOutput, error)
}

// tableWaitTimeout bounds how long CreateTable waits for the table to
// become active.
const tableWaitTimeout = 5 * time.Minute

// CreateTable creates table as [Schema] describes it, waits until it is
// active and enables TTL on [AttrTTL]. It is idempotent: an existing table is
// left as it is (its schema is not checked) except that the indexes of
// [Schema] it lacks ([IndexStatus], [IndexPrincipal]) are added, one after
// the other (a table made by an earlier version; its old requests enter
// the status index at their next change, and are never in the principal
// index), and TTL is enabled when it is not yet. It is meant for development and tests (such as `streamer dev
// --aws-local`); deployments create the table from their template.
func CreateTable(ctx context.Context, client TableAPI, table string) error {
	if client == nil {
		return errors.New("dynamodb: create table: nil client")
	}
	if err := validTableName(table); err != nil {
		return fmt.Errorf("dynamodb: create table: %w", err)
	}
	_, err := client.CreateTable(ctx, Schema(table))
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("dynamodb: create table %s: %w", table, err)
	}
	waiter := ddb.NewTableExistsWaiter(client, func(o *ddb.TableExistsWaiterOptions) {
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = 5 * time.Second
	})
	if err := waiter.Wait(ctx, &ddb.DescribeTableInput{TableName: aws.String(table)}, tableWaitTimeout); err != nil {
		return fmt.Errorf("dynamodb: create table %s: waiting until active: %w", table, err)
	}
	for _, gsi := range Schema(table).GlobalSecondaryIndexes {
		if err := addIndex(ctx, client, table, gsi); err != nil {
			return err
		}
	}

	ttl, err := client.DescribeTimeToLive(ctx, &ddb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		return fmt.Errorf("dynamodb: create table %s: describing TTL: %w", table, err)
	}
	if d := ttl.TimeToLiveDescription; d != nil && aws.ToString(d.AttributeName) == AttrTTL &&
		(d.TimeToLiveStatus == types.TimeToLiveStatusEnabled || d.TimeToLiveStatus == types.TimeToLiveStatusEnabling) {
		return nil
	}
	_, err = client.UpdateTimeToLive(ctx, &ddb.UpdateTimeToLiveInput{
		TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(AttrTTL),
			Enabled:       aws.Bool(true),
		},
	})
	if err != nil {
		return fmt.Errorf("dynamodb: create table %s: enabling TTL: %w", table, err)
	}
	return nil
}

// addIndex adds the index gsi of [Schema] to a table that lacks it, and
// waits until the index is active.
func addIndex(ctx context.Context, client TableAPI, table string, gsi types.GlobalSecondaryIndex) error {
	name := aws.ToString(gsi.IndexName)
	has := func() (bool, bool, error) {
		out, err := client.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(table)})
		if err != nil {
			return false, false, fmt.Errorf("dynamodb: create table %s: describing it: %w", table, err)
		}
		for _, g := range out.Table.GlobalSecondaryIndexes {
			if aws.ToString(g.IndexName) == name {
				// Active once the table is too, so that the next index
				// may be added.
				return true, g.IndexStatus == types.IndexStatusActive && out.Table.TableStatus == types.TableStatusActive, nil
			}
		}
		return false, false, nil
	}
	exists, active, err := has()
	if err != nil || active {
		return err
	}
	if !exists {
		// The definitions of the new index's keys only: DynamoDB refuses
		// definitions that no key of the table uses.
		var defs []types.AttributeDefinition
		for _, d := range Schema(table).AttributeDefinitions {
			for _, k := range gsi.KeySchema {
				if aws.ToString(k.AttributeName) == aws.ToString(d.AttributeName) {
					defs = append(defs, d)
				}
			}
		}
		_, err := client.UpdateTable(ctx, &ddb.UpdateTableInput{
			TableName:            aws.String(table),
			AttributeDefinitions: defs,
			GlobalSecondaryIndexUpdates: []types.GlobalSecondaryIndexUpdate{{Create: &types.CreateGlobalSecondaryIndexAction{
				IndexName: gsi.IndexName, KeySchema: gsi.KeySchema, Projection: gsi.Projection,
			}}},
		})
		if err != nil {
			return fmt.Errorf("dynamodb: create table %s: adding the index %s: %w", table, name, err)
		}
	}
	deadline := time.Now().Add(tableWaitTimeout)
	for {
		if _, active, err := has(); err != nil || active {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dynamodb: create table %s: the index %s is not active after %v", table, name, tableWaitTimeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dynamodb: create table %s: waiting for the index %s: %w", table, name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// validTableName checks DynamoDB's table naming rules.
func validTableName(name string) error {
	if len(name) < 3 || len(name) > 255 {
		return fmt.Errorf("table name %q must have 3 to 255 characters", name)
	}
	for _, c := range name {
		if !tableNameChar(c) {
			return fmt.Errorf("table name %q may only contain a-z, A-Z, 0-9, '_', '-' and '.'", name)
		}
	}
	return nil
}

func tableNameChar(c rune) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	default:
		return c == '_' || c == '-' || c == '.'
	}
}
