// Package bolt is the durable embedded [storage.Store], kept in one file with
// go.etcd.io/bbolt. It is the default store of `streamer dev`.
//
// Every method runs in one bbolt transaction (a read-only one for reads), so
// multi-item changes such as FinishRequest and DeleteConnection are atomic.
// Reads run concurrently with each other and with writes.
//
// Connections are the exception: they are kept in memory, not in the file.
// A WebSocket connection ends with the process that serves it, so a stored
// one could only be stale after a restart, and storing it cost two fsync'd
// writes per connection (connects ran at 0.49× a bare server's rate; 0.97×
// without). Their subscriptions are in the file, and DeleteConnection and
// Sweep delete them (one write, only for a connection that has some). Open
// drops the connections an older version stored.
//
// Writes use group commit: one goroutine of the Store commits them, in
// order of arrival. A write that finds it idle is committed at once, alone;
// the writes that arrive while that commit (its fsync) is in flight are
// committed together in the next transaction, up to [Options.MaxBatch]
// writes (default 1,000) and [Options.MaxBatchBytes] (default 4 MiB). So
// under load many writes share one fsync, and a lone write waits for no
// one. A write returns only once the transaction that holds it has been
// committed and fsync'd: a write that returned nil survives a crash (of
// the process or the machine). Each write's outcome is the one it would
// have had alone, run in that order: a write refused by its condition (a
// fenced AppendEvent, a taken seq, an existing request) stores nothing and
// fails no other write of its batch. A write that fails while writing (a
// bbolt error, a damaged page) makes the batch roll back and run again
// without it. Close fails the writes still waiting with [ErrClosed].
//
// A progress event (an AppendEvent without a checkpoint) takes a cheaper
// path: its batch is checked against the file in a read-only transaction
// and written to an event log beside it, <file>.wal.<n>, with one write and
// one fsync; the writes return after that fsync. Such events are "pending"
// until they are copied into the file: reads see them from memory, a flush
// goroutine copies them in large batches (4,096 events or 4 MiB pending, or
// the oldest a second old) while appends go on in a new segment, any other
// write copies them first, in its own transaction, so that it sees them,
// and Close copies what is left and removes the log. Open copies in what a
// crash left in the log; the file records how far flushes went, so no
// event is copied twice. A bbolt commit rewrites a few pages per request
// and syncs twice; the log costs one sequential write and one sync per
// batch (BENCHMARKS.md). Copy or back up the data directory with the
// process stopped, or copy the log segments too.
//
// Only one process may open a database file at a time: [Open] waits up to
// [Options.Timeout] for the file lock and then fails with [ErrLocked].
//
// Layout, all records JSON-encoded:
//
//	meta                     "version" → format version,
//	                         "wal_applied" → the event log's LSN flushes reached
//	                         (big-endian uint64)
//	connections              (empty: connections are in memory)
//	requests                 Key.String() → request
//	events/<key>             big-endian uint64 seq → event (ordered by seq)
//	subs_by_request/<key>    connection id → subscription expiry
//	subs_by_connection/<id>  Key.String() → subscription expiry
//
// A subscription's expiry, the same in both of its entries, is empty when it
// never expires (as in files written before subscriptions had one), else
// epoch milliseconds as a big-endian int64.
//
// The store does not implement [storage.ConnectionCounter]: the embedded
// runtime it serves caps each principal's open connections in its gateway
// (transport/local), which holds every connection of the process; only
// the AWS runtime, whose connections no one process holds, counts them in
// its store.
//
// There is no index by status or time: ListUnfinished and ListDue read
// every request, which is fine for the single-machine runtime.
// ListRequests (a principal's requests, newest first) needs no index
// either: Key.String escapes the tenant and subject, so one principal's
// requests are exactly the keys that start with "<tenant>|<subject>|", and
// it reads only those (with one cursor seek), sorts them by creation time
// and ID, and reads the latest event of each request of the page.
//
// Expired items (a non-zero ExpiresAt before now) are invisible: lookups
// return [storage.ErrNotFound] and listings skip them. [Store.Sweep] deletes
// them; nothing deletes them in the background.
package bolt
