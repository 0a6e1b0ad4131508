package memory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
)

func Example() {
	ctx := context.Background()
	s := memory.New()
	now := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	k := storage.Key{Tenant: "acme", Subject: "alice", ID: "r-42"}

	_ = s.CreateRequest(ctx, storage.Request{Key: k, Action: "generate_report", Status: storage.StatusQueued, CreatedAt: now})
	r, _ := s.ClaimRequest(ctx, k, storage.Claim{Now: now, LeaseUntil: now.Add(time.Minute)})
	fmt.Println(r.Status, r.Attempt)

	_ = s.AppendEvent(ctx, k, r.Attempt, storage.Event{Seq: 1, Type: "progress", Percentage: 50, Message: "halfway"}, 0)
	err := s.FinishRequest(ctx, k, storage.Finish{
		Attempt: r.Attempt,
		Event:   storage.Event{Seq: 2, Type: "complete", Percentage: 100},
		Status:  storage.StatusSucceeded,
		Result:  json.RawMessage(`{"rows":3}`),
		Now:     now.Add(time.Second),
	})
	fmt.Println(err)

	evs, _ := s.ReadEvents(ctx, k, 0, 0)
	for _, ev := range evs {
		fmt.Println(ev.Seq, ev.Type, ev.Terminal())
	}
	r, _ = s.GetRequest(ctx, k)
	fmt.Println(r.Status, string(r.Result))
	// Output:
	// running 1
	// <nil>
	// 1 progress false
	// 2 complete true
	// succeeded {"rows":3}
}
