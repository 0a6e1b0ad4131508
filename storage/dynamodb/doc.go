// Package dynamodb is the [storage.Store] of the AWS runtime, kept in one
// DynamoDB table.
//
// # Table
//
// [Schema] is the one description of the table: string keys pk and sk,
// on-demand billing, a stream of NEW_AND_OLD_IMAGES and no secondary index;
// TTL is enabled on the attribute ttl. [CreateTable] creates it for
// development and tests. Items, by partition:
//
//	pk                sk                  item
//	REQ#<key>         REQ                 the request
//	REQ#<key>         EV#<seq, 20 digits> an event (sort keys order like seqs)
//	REQ#<key>         SUB#<conn id>       a subscriber of the request
//	CONN#<conn id>    CONN                the connection
//	CONN#<conn id>    SUB#<key>           a subscription of the connection
//
// <key> is [storage.Key.String], which is unambiguous. A subscription is two
// items written and deleted together by one transaction, so both lookups
// (a request's subscribers for fan-out, a connection's subscriptions for
// DeleteConnection) are strongly consistent queries of one partition.
//
// Attributes: times are epoch milliseconds (numbers); payloads, principals,
// results and event data are binary, so they round-trip byte for byte. An
// item with an ExpiresAt also has ttl, the expiry in epoch seconds rounded
// up, so DynamoDB deletes it some time after it expires. Until then reads
// treat expired items as missing, and conditional writes treat expired
// requests as missing. The store implements neither [storage.Lister] nor
// [storage.Sweeper].
//
// # Writes
//
// Every state change is one conditional write, and a failed condition
// returns the old item (ReturnValuesOnConditionCheckFailure ALL_OLD), so
// telling [storage.ErrNotFound] from [storage.ErrConflict] never takes a
// read. AppendEvent, the progress hot path, is exactly one
// TransactWriteItems (a ConditionCheck of the request and a Put of the
// event) and no read. Writes rejected because a concurrent transaction held
// the item are retried with a short jittered backoff; throttling and
// transient errors are retried by the SDK client.
//
// Both items of a subscription carry the expiry given to Subscribe (and
// ttl), so a subscription whose $disconnect was lost does not stay forever;
// Subscribers and Subscriptions leave expired ones out, and Unsubscribe and
// DeleteConnection remove them, expired or not.
package dynamodb
