package streamer_test

import (
	"context"
	"fmt"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/streamertest"
)

// A handler that saves its place with Checkpoint, and starts from it: a
// run stopped before it finished (a Lambda's deadline, a restart) is
// continued by the next run from the last item done, not from the first.
func ExampleCheckpoint() {
	type In struct {
		Items int `json:"items" validate:"required,min=1,max=1000"`
	}
	type State struct {
		Done int `json:"done"`
	}
	work := func(ctx context.Context, in In, rep streamer.Reporter) (map[string]int, error) {
		state, resumed, err := streamer.CheckpointOf[State](ctx) // zero State on the first run
		if err != nil {
			return nil, err
		}
		start := state.Done
		for i := state.Done; i < in.Items; i++ {
			// ... process item i ...
			_ = rep.Report(ctx, streamer.Update{Percentage: float64(100*(i+1)) / float64(in.Items)})
			state.Done = i + 1
			if err := streamer.Checkpoint(ctx, rep, state); err != nil { // durable once it returns
				return nil, err
			}
		}
		fmt.Println("resumed:", resumed, "from item", start)
		return map[string]int{"items": state.Done}, nil
	}
	action := streamer.Action{Name: "work", Handler: streamer.Typed(work), Options: streamer.ActionOptions{Mode: streamer.ModeAsync}}
	out, err := streamertest.Run(context.Background(), action, In{Items: 3})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(out.Result), out.Lifecycle[0].Type)
	// Output:
	// resumed: false from item 0
	// {"items":3} started
}
