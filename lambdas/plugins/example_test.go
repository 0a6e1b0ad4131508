package plugins_test

import (
	"fmt"

	"github.com/streamer-go/streamer/lambdas/plugins"
)

func ExampleAll() {
	for _, p := range plugins.All() {
		fmt.Print(p.Name, ":")
		for _, a := range p.Actions {
			fmt.Print(" ", a.Name)
		}
		fmt.Println()
	}
	// Output:
	// demo: echo delay fail blob
}
