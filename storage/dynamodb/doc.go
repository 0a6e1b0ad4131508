// Package dynamodb is the [storage.Store] of the AWS runtime, kept in one
// DynamoDB table.
//
// # Table
//
// [Schema] is the one description of the table: string keys pk and sk,
// on-demand billing, a stream of NEW_AND_OLD_IMAGES and two global
// secondary indexes, [IndexStatus] and [IndexPrincipal]; TTL is enabled on
// the attribute ttl.
// [CreateTable] creates it for development and tests. Items, by partition:
//
//	pk                sk                  item
//	REQ#<key>         REQ                 the request
//	REQ#<key>         EV#<seq, 20 digits> an event (sort keys order like seqs)
//	REQ#<key>         SUB#<conn id>       a subscriber of the request
//	CONN#<conn id>    CONN                the connection
//	CONN#<conn id>    SUB#<key>           a subscription of the connection
//	PCONN#<principal> COUNT               a principal's count of open connections
//	PCONN#<principal> CONN#<conn id>      a connection it counts
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
// requests as missing. The store implements [storage.DueLister],
// [storage.PrincipalLister] and [storage.ConnectionCounter], but neither
// [storage.Lister] nor [storage.Sweeper].
//
// <principal> is the tenant and subject escaped as in
// [storage.Key.String] ("<tenant>|<subject>|"). The counter partition is
// written only by PutConnectionCounted, DeleteConnection of a counted
// connection and the recount of a refusal (see
// [Store.PutConnectionCounted]): connects cost a transaction of three items
// (6 write units), and so do disconnects; the counter item has no TTL.
//
// An expired request that TTL has not deleted yet may be replaced by
// CreateRequest; its events stay until TTL deletes them. They carry the old
// request's expiry, so ReadEvents and LastEvent skip them, and an event
// write's condition (the seq is free) holds for an expired event item too:
// the new run writes seq 1 over the old run's.
//
// # Status index
//
// [IndexStatus] lists request items by status and time. Its partition key
// [AttrStatusShard] is the status and a shard of the key ("queued#07": 16
// shards per status, so no status is one hot partition); its sort key
// [AttrStatusTime] is when a live request is due (NotBefore if queued, or
// CreatedAt when later; LeaseUntil if running or canceling) or when a
// finished one finished
// (UpdatedAt). It projects the table's keys, action and expires_at, which
// never change after CreateRequest, so only a change of status or time
// writes the index. Every write that changes them keeps the two attributes
// in the same write: CreateRequest, ClaimRequest, ExtendLease,
// RequeueRequest, CancelRequest and FinishRequest. Events, subscriptions
// and connections have neither attribute and are not in the index;
// AppendEvent and Subscribe never write it.
//
// ListDue queries the index, never scans: one Query per live status and
// shard (48, run 8 at a time) for entries due before the given time, then
// one strongly consistent BatchGetItem per 100 requests found, keeping the
// requests still due (the index is eventually consistent). The same index
// serves listings by status and time of finished requests (for example, the
// failed ones of the last hours: 16 queries with a time range).
//
// Request items written before the index existed lack its attributes and
// are not in it until their next status change; CreateTable adds the index
// to an existing table that lacks it, as a CloudFormation deploy of
// serverless.yml does.
//
// # Principal index
//
// [IndexPrincipal] lists one principal's request items, newest first, for
// ListRequests (the reserved action "list"). Its partition key
// [AttrPrincipalKey] is the escaped tenant and subject ("<tenant>|<subject>|",
// as in [storage.Key.String], so ("a|b", "c") and ("a", "b|c") never share
// a partition); its sort key [AttrPrincipalTime] is the creation time
// (20 digits, offset so that times before 1970 order too), "#" and the ID.
// It projects expires_at only. CreateRequest sets both attributes and no
// other write touches them or expires_at, so a request writes the index
// once, when it is created. The attributes that change with each event
// (seq, percentage, message; updated_at with each claim and finish) and
// status are not projected: progress events, status changes, lease
// renewals and subscriptions never write this index.
//
// ListRequests is a Query of the principal's partition, never a scan:
// backwards (ScanIndexForward false) from the cursor, an exclusive bound on
// the sort key, with a Limit of the page size plus one (to tell whether a
// next page exists). Index reads are eventually consistent, so the state
// shown comes from the table: one strongly consistent BatchGetItem of the
// page's request items (projected to the listed attributes), whose status
// the status filter is applied to, then one strongly consistent LastEvent
// Query per listed request for its seq, percentage and message, 8 at a
// time. With a status filter that skips many requests, further rounds of
// 100 entries follow, up to 200 entries per call; the page may then be
// short, with a cursor. The cursor is a [storage.ListPos]: the page's last
// creation time and ID, nothing of the principal, which always comes from
// the caller.
//
// # Writes
//
// Every state change is one conditional write, and a failed condition
// returns the old item (ReturnValuesOnConditionCheckFailure ALL_OLD), so
// telling [storage.ErrNotFound] from [storage.ErrConflict] never takes a
// read. AppendEvent, the progress hot path, is exactly one
// TransactWriteItems (a ConditionCheck of the request and a Put of the
// event) and no read. Fencing is part of each condition: AppendEvent,
// FinishRequest, ExtendLease and RequeueRequest require the request's
// attempt to be the caller's. Writes rejected because a concurrent
// transaction held the item are retried with a short jittered backoff;
// throttling and transient errors are retried by the SDK client.
//
// The one exception is a takeover without Claim.Stalled: a claim first
// tries the queued case (no stall), and only when the refusal's old item
// shows a running or canceling request whose lease passed does a second
// UpdateItem take it over and count the stall. An update expression cannot
// add to stalls in one branch of its condition only. A claim with
// Claim.Stalled counts a stall in either case, so it is one write.
//
// # Cost
//
// On-demand units for items up to 1 KB (a request item with a larger
// payload costs one more write unit per KB in the table, not in the index,
// whose entries are about 150 bytes). A transaction bills 2 write units per
// item, its ConditionCheck included; an index write is 1 unit, and a change
// of an index key attribute is 2 (the old entry's delete and the new one's
// put).
//
//	operation                       table WRU         index WRU
//	CreateRequest                   1                 2 (1 status, 1 principal)
//	ClaimRequest (queued, stalled)  1                 2
//	ClaimRequest (takeover)         2 (one refused)   2
//	ExtendLease                     1                 2
//	RequeueRequest, CancelRequest   1                 2
//	AppendEvent (per event)         4                 0
//	FinishRequest                   4                 2
//
// With [Limits] on (the Lambdas' default), CreateRequest is a transaction
// with the principal's counter (4), a claim of a queued request a
// transaction with the key's counter (4) plus one GetItem, FinishRequest
// adds two counter updates (8), and RequeueRequest and ContinueRequest one
// (4); each release queries the key's waiting partition once (0.5 RRU).
// docs/fairness.md has the design.
//
// Only CreateRequest writes the principal index (its entry is about 250
// bytes: 1 unit). A request with N progress events and no lease renewal
// therefore costs 4N + 6 table write units and 6 index write units (5
// status, 1 principal); each 20 s lease renewal adds 1 + 2. Subscribe (3 items in a transaction: 6) writes no
// index entry. One ListDue costs 48 eventually consistent index queries of
// 0.5 read units each when few requests are due (24 RRU; each 4 KB of
// entries read adds 0.5), plus 1 RRU per request it returns (strongly
// consistent BatchGetItem of items up to 4 KB). Run once a minute, that is
// about 35,000 RRU a day.
//
// One ListRequests page of L requests without a status filter reads the
// index once (L + 1 entries of about 250 bytes, eventually consistent: 0.5
// RRU per 4 KB, so 1 RRU for L = 20 and 3.5 for L = 100), then 1 RRU per
// request item and 1 per last event, each per 4 KB (a request with a large
// payload, or whose last event is a complete carrying a large result, costs
// more): about 2L + 1 RRU, 41 for a page of 20 (TestListCost measures it
// on DynamoDB Local). A status filter adds 1 RRU per request read and
// skipped, at most 200 per call.
//
// Both items of a subscription carry the expiry given to Subscribe (and
// ttl), so a subscription whose $disconnect was lost does not stay forever;
// Subscribers and Subscriptions leave expired ones out, and Unsubscribe and
// DeleteConnection remove them, expired or not.
package dynamodb
