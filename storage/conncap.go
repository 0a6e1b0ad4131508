package storage

import (
	"context"
	"errors"
)

// ErrTooManyConnections is returned (wrapped) by
// [ConnectionCounter.PutConnectionCounted] when the connection's principal
// already has as many open connections as the limit allows.
var ErrTooManyConnections = errors.New("storage: too many open connections for this principal")

// ConnectionCounter is implemented by stores that count each principal's
// open connections, so that a runtime whose connections are not all held
// by one process (the AWS Lambdas, behind API Gateway) can cap them. The
// embedded runtime counts them in its gateway instead (transport/local),
// so its stores need not implement it. storagetest's ConnectionCounter
// group checks the rules below.
//
// A principal is the pair (Tenant, Subject) of a [Connection].
type ConnectionCounter interface {
	// PutConnectionCounted stores c as PutConnection does and counts it
	// against its principal, unless the principal already has limit (at
	// least 1) counted connections: then it stores nothing and returns an
	// error wrapping [ErrTooManyConnections]. Storing again a connection
	// that is counted replaces it without counting it twice.
	// DeleteConnection of a counted connection frees its place.
	//
	// A counted connection that has expired (its ExpiresAt passed, by the
	// store's clock), or whose connection is gone without a
	// DeleteConnection, stops counting. A store may notice that late: at
	// the latest when a put would otherwise be refused, it counts the
	// principal's connections again from the connections themselves,
	// before refusing (a store may do that at most once a minute per
	// principal, so that refused puts stay cheap).
	PutConnectionCounted(ctx context.Context, c Connection, limit int) error
	// OpenConnections returns how many connections of the principal
	// (tenant, subject) the store counts now: after PutConnectionCounted
	// and DeleteConnection calls alone, the counted connections stored and
	// not deleted. It may include connections that have since expired or
	// vanished, until a recount.
	OpenConnections(ctx context.Context, tenant, subject string) (int, error)
}
