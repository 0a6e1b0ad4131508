package web_test

import (
	"fmt"
	"io/fs"

	"github.com/streamer-go/streamer/cli/web"
)

// FS holds the demo page, ready for http.FileServerFS.
func Example() {
	names, err := fs.Glob(web.FS, "*")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(names)
	// Output: [app.js index.html]
}
