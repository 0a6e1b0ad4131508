package memory_test

import (
	"context"
	"fmt"
	"time"

	"github.com/streamer-go/streamer/ratelimit"
	"github.com/streamer-go/streamer/ratelimit/memory"
)

func ExampleNew() {
	now := time.Unix(0, 0)
	l := memory.New(memory.Options{Now: func() time.Time { return now }})
	rule := ratelimit.Rule{Rate: 1, Burst: 2} // 1 a second, 2 at once
	for range 3 {
		d, _ := l.Take(context.Background(), "alice", rule, 1)
		fmt.Println(d.Allowed, d.RetryAfter)
	}
	// Output:
	// true 0s
	// true 0s
	// false 1s
}
