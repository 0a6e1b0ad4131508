package dynamodb

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/streamer-go/streamer/storage"
)

// Key attribute values. Every item lives in a request's or a connection's
// partition; the sort key says what it is.
const (
	prefixRequest    = "REQ#"  // pk of a request's partition
	prefixConnection = "CONN#" // pk of a connection's partition
	sortRequest      = "REQ"   // sk of the request item
	sortConnection   = "CONN"  // sk of the connection item
	prefixEvent      = "EV#"   // sk prefix of events: EV#<20-digit seq>
	prefixSub        = "SUB#"  // sk prefix of subscriptions
)

// Attribute names. Key attributes and the TTL attribute are exported as
// constants in schema.go.
const (
	attrAction       = "action"
	attrPayload      = "payload"
	attrMetadata     = "metadata"
	attrFingerprint  = "fingerprint"
	attrPrincipal    = "principal"
	attrConnID       = "conn_id"
	attrEndpoint     = "endpoint"
	attrTraceParent  = "trace_parent" // projected into no index
	attrStatus       = "status"
	attrClaimStatus  = "claim_status"
	attrClaimShard   = "claim_shard"
	attrAttempt      = "attempt"
	attrStalls       = "stalls"
	attrContinued    = "continuations"
	attrCheckpoint   = "checkpoint"
	attrStartedAt    = "started_at"
	attrSubsVersion  = "subs_version"
	attrNotBefore    = "not_before"
	attrLeaseUntil   = "lease_until"
	attrResult       = "result"
	attrResultChunks = "result_chunks"
	attrError        = "error"
	attrCreatedAt    = "created_at"
	attrUpdatedAt    = "updated_at"
	attrExpiresAt    = "expires_at"
	attrTenant       = "tenant"
	attrSubject      = "subject"
	attrConnectedAt  = "connected_at"
	attrSeq          = "seq"
	attrType         = "type"
	attrPercentage   = "percentage"
	attrMessage      = "message"
	attrData         = "data"
	attrRequestKey   = "request_key"

	errCode      = "code"
	errMessage   = "message"
	errDetails   = "details"
	errRetryable = "retryable"
)

// item is one DynamoDB item.
type item = map[string]types.AttributeValue

func requestPK(k storage.Key) string { return prefixRequest + k.String() }
func connPK(id string) string        { return prefixConnection + id }

// eventSK encodes seq with 20 digits so that sort keys order like seqs
// (the largest int64 has 19 digits).
func eventSK(seq int64) string { return fmt.Sprintf("%s%020d", prefixEvent, seq) }

func primaryKey(pk, sk string) item {
	return item{AttrPK: str(pk), AttrSK: str(sk)}
}

func requestKey(k storage.Key) item { return primaryKey(requestPK(k), sortRequest) }

// shard is k's shard of [IndexStatus]: a hash of its key, so that every
// write of a request computes it without a read.
func shard(k storage.Key) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(k.String()))
	return int(h.Sum32() % StatusShards)
}

// statusShard is the [AttrStatusShard] value of k in status st.
func statusShard(st string, k storage.Key) string { return shardOf(st, shard(k)) }

func shardOf(st string, n int) string { return fmt.Sprintf("%s#%02d", st, n) }

// statusTime is the [AttrStatusTime] of r: when it is due while live, when
// it finished once final.
func statusTime(r storage.Request) time.Time { return storage.StatusTime(r) }

// --- attribute value constructors -------------------------------------------

func str(s string) *types.AttributeValueMemberS { return &types.AttributeValueMemberS{Value: s} }

func num(n int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func bin(b []byte) *types.AttributeValueMemberB {
	return &types.AttributeValueMemberB{Value: append([]byte(nil), b...)}
}

func millis(t time.Time) *types.AttributeValueMemberN { return num(t.UnixMilli()) }

// ttlSeconds is the TTL attribute of an expiry: epoch seconds, rounded up so
// that DynamoDB never deletes an item before it expires.
func ttlSeconds(t time.Time) *types.AttributeValueMemberN {
	ms := t.UnixMilli()
	sec := ms / 1000
	if ms%1000 > 0 {
		sec++
	}
	return num(sec)
}

// builder sets optional attributes, leaving zero values out.
type builder item

func (b builder) str(name, v string) {
	if v != "" {
		b[name] = str(v)
	}
}

func (b builder) bin(name string, v []byte) {
	if len(v) > 0 {
		b[name] = bin(v)
	}
}

func (b builder) int(name string, v int64) {
	if v != 0 {
		b[name] = num(v)
	}
}

func (b builder) time(name string, t time.Time) {
	if !t.IsZero() {
		b[name] = millis(t)
	}
}

// expiry sets the expiry in milliseconds and the TTL attribute in seconds.
func (b builder) expiry(t time.Time) {
	if !t.IsZero() {
		b[attrExpiresAt] = millis(t)
		b[AttrTTL] = ttlSeconds(t)
	}
}

// --- encoding ---------------------------------------------------------------

func encodeConnection(c storage.Connection) item {
	it := primaryKey(connPK(c.ID), sortConnection)
	b := builder(it)
	b.str(attrConnID, c.ID)
	b.str(attrTenant, c.Tenant)
	b.str(attrSubject, c.Subject)
	b.bin(attrPrincipal, c.Principal)
	b.str(attrEndpoint, c.Endpoint)
	b.time(attrConnectedAt, c.ConnectedAt)
	b.expiry(c.ExpiresAt)
	return it
}

func encodeRequest(r storage.Request) item {
	it := requestKey(r.Key)
	b := builder(it)
	b.str(attrAction, r.Action)
	b.bin(attrPayload, r.Payload)
	if len(r.Metadata) > 0 {
		m := make(item, len(r.Metadata))
		for k, v := range r.Metadata {
			m[k] = str(v)
		}
		it[attrMetadata] = &types.AttributeValueMemberM{Value: m}
	}
	b.str(attrFingerprint, r.Fingerprint)
	b.bin(attrPrincipal, r.Principal)
	b.str(attrConnID, r.ConnectionID)
	b.str(attrEndpoint, r.Endpoint)
	b.str(attrTraceParent, r.TraceParent)
	b.str(attrStatus, string(r.Status))
	if r.Status == storage.StatusCanceling {
		it[attrClaimStatus] = str(canceling)
		it[attrClaimShard] = str(statusShard(canceling, r.Key))
	}
	// The index attributes: a zero time too, so that every request is in
	// the index.
	it[AttrStatusShard] = str(statusShard(string(r.Status), r.Key))
	it[AttrStatusTime] = millis(statusTime(r))
	setListAttributes(it, r)
	b.int(attrAttempt, int64(r.Attempt))
	b.int(attrStalls, int64(r.Stalls))
	b.int(attrContinued, int64(r.Continuations))
	b.bin(attrCheckpoint, r.Checkpoint)
	b.time(attrStartedAt, r.StartedAt)
	b.int(attrSubsVersion, r.SubsVersion)
	b.time(attrNotBefore, r.NotBefore)
	b.time(attrLeaseUntil, r.LeaseUntil)
	b.bin(attrResult, r.Result)
	b.int(attrResultChunks, int64(r.ResultChunks))
	if r.Error != nil {
		it[attrError] = encodeError(r.Error)
	}
	b.time(attrCreatedAt, r.CreatedAt)
	b.time(attrUpdatedAt, r.UpdatedAt)
	b.expiry(r.ExpiresAt)
	return it
}

func encodeError(e *storage.ErrorInfo) *types.AttributeValueMemberM {
	m := item{}
	b := builder(m)
	b.str(errCode, e.Code)
	b.str(errMessage, e.Message)
	b.bin(errDetails, e.Details)
	if e.Retryable {
		m[errRetryable] = &types.AttributeValueMemberBOOL{Value: true}
	}
	return &types.AttributeValueMemberM{Value: m}
}

func encodeEvent(k storage.Key, e storage.Event) (item, error) {
	if e.Seq < 1 {
		return nil, fmt.Errorf("seq %d is not positive", e.Seq)
	}
	if math.IsNaN(e.Percentage) || math.IsInf(e.Percentage, 0) {
		return nil, fmt.Errorf("percentage %v is not a finite number", e.Percentage)
	}
	it := primaryKey(requestPK(k), eventSK(e.Seq))
	b := builder(it)
	it[attrSeq] = num(e.Seq)
	b.str(attrType, e.Type)
	if e.Percentage != 0 {
		it[attrPercentage] = &types.AttributeValueMemberN{Value: strconv.FormatFloat(e.Percentage, 'g', -1, 64)}
	}
	b.str(attrMessage, e.Message)
	b.bin(attrData, e.Data)
	b.time(attrCreatedAt, e.CreatedAt)
	b.expiry(e.ExpiresAt)
	return it, nil
}

// --- decoding ---------------------------------------------------------------

// reader reads attributes of one item, keeping the first error.
type reader struct {
	it  item
	err error
}

func (r *reader) fail(name string, err error) {
	if r.err == nil {
		r.err = fmt.Errorf("attribute %s: %w", name, err)
	}
}

func (r *reader) str(name string) string {
	switch v := r.it[name].(type) {
	case nil:
		return ""
	case *types.AttributeValueMemberS:
		return v.Value
	default:
		r.fail(name, fmt.Errorf("want a string, got %T", v))
		return ""
	}
}

func (r *reader) bin(name string) []byte {
	switch v := r.it[name].(type) {
	case nil:
		return nil
	case *types.AttributeValueMemberB:
		return append([]byte(nil), v.Value...)
	default:
		r.fail(name, fmt.Errorf("want binary, got %T", v))
		return nil
	}
}

func (r *reader) numText(name string) string {
	switch v := r.it[name].(type) {
	case nil:
		return ""
	case *types.AttributeValueMemberN:
		return v.Value
	default:
		r.fail(name, fmt.Errorf("want a number, got %T", v))
		return ""
	}
}

func (r *reader) int(name string) int64 {
	s := r.numText(name)
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		r.fail(name, err)
	}
	return n
}

func (r *reader) float(name string) float64 {
	s := r.numText(name)
	if s == "" {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		r.fail(name, err)
	}
	return f
}

func (r *reader) time(name string) time.Time {
	if _, ok := r.it[name]; !ok {
		return time.Time{}
	}
	return time.UnixMilli(r.int(name)).UTC()
}

func (r *reader) stringMap(name string) map[string]string {
	switch v := r.it[name].(type) {
	case nil:
		return nil
	case *types.AttributeValueMemberM:
		out := make(map[string]string, len(v.Value))
		sub := reader{it: v.Value}
		for k := range v.Value {
			out[k] = sub.str(k)
		}
		if sub.err != nil {
			r.fail(name, sub.err)
		}
		return out
	default:
		r.fail(name, fmt.Errorf("want a map, got %T", v))
		return nil
	}
}

func (r *reader) errorInfo(name string) *storage.ErrorInfo {
	switch v := r.it[name].(type) {
	case nil:
		return nil
	case *types.AttributeValueMemberM:
		sub := reader{it: v.Value}
		e := &storage.ErrorInfo{
			Code:    sub.str(errCode),
			Message: sub.str(errMessage),
			Details: json.RawMessage(sub.bin(errDetails)),
		}
		switch b := v.Value[errRetryable].(type) {
		case nil:
		case *types.AttributeValueMemberBOOL:
			e.Retryable = b.Value
		default:
			sub.fail(errRetryable, fmt.Errorf("want a boolean, got %T", b))
		}
		if sub.err != nil {
			r.fail(name, sub.err)
		}
		return e
	default:
		r.fail(name, fmt.Errorf("want a map, got %T", v))
		return nil
	}
}

// expired reports whether an item's expiry has passed at now.
func expired(it item, now time.Time) bool {
	r := reader{it: it}
	exp := r.time(attrExpiresAt)
	return !exp.IsZero() && exp.Before(now)
}

func decodeConnection(it item) (storage.Connection, error) {
	r := reader{it: it}
	c := storage.Connection{
		ID:          r.str(attrConnID),
		Tenant:      r.str(attrTenant),
		Subject:     r.str(attrSubject),
		Principal:   r.bin(attrPrincipal),
		Endpoint:    r.str(attrEndpoint),
		ConnectedAt: r.time(attrConnectedAt),
		ExpiresAt:   r.time(attrExpiresAt),
	}
	if r.err != nil {
		return storage.Connection{}, fmt.Errorf("decoding connection: %w", r.err)
	}
	return c, nil
}

func decodeRequest(it item) (storage.Request, error) {
	r := reader{it: it}
	pk := r.str(AttrPK)
	k, err := storage.ParseKey(strings.TrimPrefix(pk, prefixRequest))
	if err != nil || !strings.HasPrefix(pk, prefixRequest) {
		return storage.Request{}, fmt.Errorf("decoding request: malformed %s %q", AttrPK, pk)
	}
	req := storage.Request{
		Key:           k,
		Action:        r.str(attrAction),
		Payload:       json.RawMessage(r.bin(attrPayload)),
		Metadata:      r.stringMap(attrMetadata),
		Fingerprint:   r.str(attrFingerprint),
		Principal:     r.bin(attrPrincipal),
		ConnectionID:  r.str(attrConnID),
		Endpoint:      r.str(attrEndpoint),
		TraceParent:   r.str(attrTraceParent),
		Status:        storage.Status(r.str(attrStatus)),
		Attempt:       int(r.int(attrAttempt)),
		Stalls:        int(r.int(attrStalls)),
		Continuations: int(r.int(attrContinued)),
		Checkpoint:    json.RawMessage(r.bin(attrCheckpoint)),
		StartedAt:     r.time(attrStartedAt),
		SubsVersion:   r.int(attrSubsVersion),
		NotBefore:     r.time(attrNotBefore),
		LeaseUntil:    r.time(attrLeaseUntil),
		Result:        json.RawMessage(r.bin(attrResult)),
		ResultChunks:  int(r.int(attrResultChunks)),
		Error:         r.errorInfo(attrError),
		CreatedAt:     r.time(attrCreatedAt),
		UpdatedAt:     r.time(attrUpdatedAt),
		ExpiresAt:     r.time(attrExpiresAt),
	}
	if r.err != nil {
		return storage.Request{}, fmt.Errorf("decoding request %s: %w", k, r.err)
	}
	return req, nil
}

func decodeEvent(it item) (storage.Event, error) {
	r := reader{it: it}
	e := storage.Event{
		Seq:        r.int(attrSeq),
		Type:       r.str(attrType),
		Percentage: r.float(attrPercentage),
		Message:    r.str(attrMessage),
		Data:       r.bin(attrData),
		CreatedAt:  r.time(attrCreatedAt),
		ExpiresAt:  r.time(attrExpiresAt),
	}
	if r.err != nil {
		return storage.Event{}, fmt.Errorf("decoding event: %w", r.err)
	}
	return e, nil
}
