// Package storagetest is the conformance suite every [storage.Store] backend
// passes. A backend's test calls [Run] with a factory:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Store {
//			return memory.New()
//		})
//	}
//
// The suite is written for stores shared between tests, such as one DynamoDB
// table: every subtest makes its own keys and connection ids from a random
// prefix, never assumes the store is empty, and runs in parallel with the
// others. The factory may therefore return a fresh store per call or the same
// one every time.
//
// The optional capabilities [storage.Lister], [storage.DueLister] and
// [storage.Sweeper] are tested only when the store implements them. On a
// shared store ListDue also returns other tests' requests: the suite checks
// its own and that every request listed is due and unexpired. The Sweeper test sweeps with a clock two
// hours ahead, so on a shared store items of other tests that expire within two
// hours may be swept; the suite's own items never expire (zero ExpiresAt), have
// already expired, or expire much later.
//
// Backends may keep times at millisecond precision: the suite uses times
// truncated to the millisecond and compares them with time.Equal. Besides the
// doc comments of [storage.Store], the suite expects ClaimRequest,
// CancelRequest and FinishRequest to set UpdatedAt to the time they are given,
// payloads and event data to round-trip byte for byte, and nil and empty
// slices and maps to be interchangeable.
//
// Besides the fixed times it gives, the suite relies on the store's own
// clock being the wall clock in one place: a request re-created after it
// expired is given an expiry about a second ahead (longer when the store is
// slow) and the test polls until the store treats it as expired.
package storagetest
