package bolt_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/bolt"
)

func Example() {
	dir, err := os.MkdirTemp("", "streamer-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = os.RemoveAll(dir) }()

	ctx := context.Background()
	s, err := bolt.Open(filepath.Join(dir, "streamer.db"), bolt.Options{Timeout: time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = s.Close() }()

	now := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	k := storage.Key{Tenant: "acme", Subject: "alice", ID: "r-42"}
	_ = s.CreateRequest(ctx, storage.Request{Key: k, Action: "generate_report", Status: storage.StatusQueued, CreatedAt: now})
	r, _ := s.ClaimRequest(ctx, k, storage.Claim{Now: now, LeaseUntil: now.Add(time.Minute)})
	fmt.Println(r.Status, r.Attempt)

	_ = s.AppendEvent(ctx, k, r.Attempt, storage.Event{Seq: 1, Type: "progress", Percentage: 50, Message: "halfway"}, 0)
	_ = s.FinishRequest(ctx, k, storage.Finish{
		Attempt: r.Attempt,
		Event:   storage.Event{Seq: 2, Type: "complete", Percentage: 100},
		Status:  storage.StatusSucceeded,
		Result:  json.RawMessage(`{"rows":3}`),
		Now:     now.Add(time.Second),
	})
	// A second finish loses: there is exactly one terminal event.
	err = s.FinishRequest(ctx, k, storage.Finish{Attempt: r.Attempt, Event: storage.Event{Seq: 3, Type: "error"}, Status: storage.StatusFailed})
	fmt.Println(errors.Is(err, storage.ErrConflict))

	evs, _ := s.ReadEvents(ctx, k, 0, 0)
	for _, ev := range evs {
		fmt.Println(ev.Seq, ev.Type, ev.Percentage)
	}
	unfinished, _ := s.ListUnfinished(ctx)
	fmt.Println(len(unfinished))
	// Output:
	// running 1
	// true
	// 1 progress 50
	// 2 complete 100
	// 0
}
