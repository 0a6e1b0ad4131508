package plugins_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/blob/localblob"
	"github.com/streamer-go/streamer/plugins"
)

// All builds the same plugins on any blob store: here the directory that
// `streamer dev` serves.
func ExampleAll() {
	dir, err := os.MkdirTemp("", "plugins-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = os.RemoveAll(dir) }()
	store, err := localblob.New(localblob.Config{Dir: dir, BaseURL: "http://127.0.0.1:8080/blobs/"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ps, err := plugins.All(context.Background(), streamer.Env{Blobs: store, Retention: 24 * time.Hour})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range ps {
		fmt.Print(p.Name, ":")
		for _, a := range p.Actions {
			fmt.Print(" ", a.Name)
		}
		fmt.Println()
	}

	// Without a blob store, the runtime refuses to start.
	_, err = plugins.All(context.Background(), streamer.Env{})
	fmt.Println(err)
	// Output:
	// demo: echo delay fail blob checkpointed
	// report: generate_report
	// the report plugin's files: no blob store (on Lambda, set STREAMER_BUCKET to an S3 bucket)
}
