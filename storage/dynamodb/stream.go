package dynamodb

import (
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/streamer-go/streamer/storage"
)

// StreamFilterPattern is the DynamoDB Streams event filter that passes only
// records of newly queued requests: an insert, or a modification (a retry's
// re-queue), whose new image is a request item in status queued. The
// processor's event source mapping in serverless.yml declares this pattern,
// and the local stream poller applies [QueuedRequest] to the same effect.
const StreamFilterPattern = `{"eventName":["INSERT","MODIFY"],"dynamodb":{"NewImage":{"sk":{"S":["REQ"]},"status":{"S":["queued"]}}}}`

// QueuedRequest reads a stream record's new image. It returns the request's
// key and true when the image is a request item in status queued, and false
// for any other item. An image that claims to be a request but cannot be
// read is an error.
func QueuedRequest(image map[string]types.AttributeValue) (storage.Key, bool, error) {
	sk, _ := image[AttrSK].(*types.AttributeValueMemberS)
	if sk == nil || sk.Value != sortRequest {
		return storage.Key{}, false, nil
	}
	status, _ := image[attrStatus].(*types.AttributeValueMemberS)
	if status == nil || status.Value != string(storage.StatusQueued) {
		return storage.Key{}, false, nil
	}
	pk, _ := image[AttrPK].(*types.AttributeValueMemberS)
	if pk == nil || !strings.HasPrefix(pk.Value, prefixRequest) {
		return storage.Key{}, false, fmt.Errorf("dynamodb: request image has no %s attribute of the form %s<key>", AttrPK, prefixRequest)
	}
	k, err := storage.ParseKey(strings.TrimPrefix(pk.Value, prefixRequest))
	if err != nil {
		return storage.Key{}, false, fmt.Errorf("dynamodb: request image: %w", err)
	}
	return k, true, nil
}

// NewlyQueued is [QueuedRequest] for a stream record with both images: it
// reports a request item that the write made due to be run, and false for
// one that was queued and stays queued the same (a write that only
// subscribed a connection, which a processor has nothing new to do for).
// A request queued again (requeued, continued, or created anew over an
// expired one) is newly queued: its status, attempt, not_before or
// created_at changed, or it was woken from its key's waiting partition
// (see [Limits]); a parked request is not due. oldImage is nil for an
// INSERT.
func NewlyQueued(oldImage, newImage map[string]types.AttributeValue) (storage.Key, bool, error) {
	k, ok, err := QueuedRequest(newImage)
	if err != nil || !ok {
		return k, ok, err
	}
	if parked(newImage) {
		// Waiting for a slot of its key (Limits.KeyConcurrency): the run
		// that frees one wakes it, and that write dispatches it.
		return k, false, nil
	}
	if oldImage == nil || parked(oldImage) {
		return k, true, nil
	}
	if _, wasQueued, err := QueuedRequest(oldImage); err != nil || !wasQueued {
		return k, true, nil //nolint:nilerr // an unreadable old image: dispatch, the claim decides
	}
	for _, attr := range []string{attrAttempt, attrNotBefore, attrCreatedAt, attrContinued} {
		if numberOf(oldImage[attr]) != numberOf(newImage[attr]) {
			return k, true, nil
		}
	}
	return k, false, nil
}

// numberOf is the text of a number attribute, "" when absent or not a
// number.
func numberOf(v types.AttributeValue) string {
	if n, ok := v.(*types.AttributeValueMemberN); ok {
		return n.Value
	}
	return ""
}
