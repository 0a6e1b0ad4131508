package demo_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/plugins/demo"
)

// New builds the plugin; register it with an App's Config.
func ExampleNew() {
	p := demo.New()
	fmt.Println(p.Name)
	for _, a := range p.Actions {
		fmt.Println(a.Name, a.Options.Mode)
	}
	// Output:
	// demo
	// echo sync
	// delay async
	// fail async
	// blob async
	// checkpointed async
}

// The delay action reports its steps and completes with what it did.
func ExampleNew_delay() {
	var delay streamer.Handler
	for _, a := range demo.New().Actions {
		if a.Name == demo.ActionDelay {
			delay = a.Handler
		}
	}
	rep := streamer.ReporterFunc(func(_ context.Context, u streamer.Update) error {
		fmt.Printf("%g%% %s\n", u.Percentage, u.Message)
		return nil
	})
	req := &streamer.Request{ID: "r-1", Action: "delay", Payload: json.RawMessage(`{"ms":10,"steps":2}`)}
	res, err := delay.Serve(context.Background(), req, rep)
	if err != nil {
		fmt.Println(err)
		return
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	// Output:
	// 50% step 1/2
	// 100% step 2/2
	// {"steps":2,"ms":10}
}
