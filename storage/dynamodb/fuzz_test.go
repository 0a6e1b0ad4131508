package dynamodb_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

// image builds a request image from fuzzed attributes; an empty string
// leaves the attribute out, and numeric ones go in as numbers (any text).
func image(pk, sk, status, attempt, notBefore string) map[string]types.AttributeValue {
	img := map[string]types.AttributeValue{}
	for name, v := range map[string]string{"pk": pk, "sk": sk, "status": status} {
		if v != "" {
			img[name] = &types.AttributeValueMemberS{Value: v}
		}
	}
	for name, v := range map[string]string{"attempt": attempt, "not_before": notBefore} {
		if v != "" {
			img[name] = &types.AttributeValueMemberN{Value: v}
		}
	}
	return img
}

// FuzzNewlyQueued feeds stream-record images to NewlyQueued and
// QueuedRequest: they must never panic; a reported key must round-trip and
// agree with QueuedRequest; a record whose request stays queued the same
// (identical images) is never reported; an INSERT (no old image) is
// reported exactly when QueuedRequest reports it.
func FuzzNewlyQueued(f *testing.F) {
	f.Add("REQ#t|alice|r-1", "REQ", "queued", "1", "", "REQ#t|alice|r-1", "REQ", "queued", "2", "", true)
	f.Add("REQ#t|alice|r-1", "REQ", "queued", "1", "5", "REQ#t|alice|r-1", "REQ", "queued", "1", "5", true)
	f.Add("", "", "", "", "", "REQ#|bob|job", "REQ", "queued", "", "", false)
	f.Add("REQ#a|b", "REQ", "running", "", "", "REQ#a\\|b|c|d", "REQ", "queued", "x", "1e9", true)
	f.Add("", "", "", "", "", "REQ#%7C|%|", "REQ", "queued", "", "", false)
	f.Fuzz(func(t *testing.T, opk, osk, ostatus, oattempt, onb, npk, nsk, nstatus, nattempt, nnb string, hasOld bool) {
		var old map[string]types.AttributeValue
		if hasOld {
			old = image(opk, osk, ostatus, oattempt, onb)
		}
		img := image(npk, nsk, nstatus, nattempt, nnb)
		k, ok, err := dynamodb.NewlyQueued(old, img)
		qk, qok, qerr := dynamodb.QueuedRequest(img)
		if (err != nil) != (qerr != nil) {
			t.Fatalf("NewlyQueued error %v, QueuedRequest error %v", err, qerr)
		}
		if ok && (!qok || k != qk) {
			t.Fatalf("NewlyQueued reported %#v, QueuedRequest %#v %v", k, qk, qok)
		}
		if old == nil && ok != qok {
			t.Fatalf("an insert: NewlyQueued %v, QueuedRequest %v", ok, qok)
		}
		if ok {
			if back, perr := storage.ParseKey(k.String()); perr != nil || back != k {
				t.Fatalf("key %#v does not round-trip: %#v, %v", k, back, perr)
			}
		}
		if same, sok, _ := dynamodb.NewlyQueued(img, img); sok {
			t.Fatalf("a record that leaves the request queued the same was reported: %#v", same)
		}
	})
}
