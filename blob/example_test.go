package blob_test

import (
	"errors"
	"fmt"

	"github.com/streamer-go/streamer/blob"
)

// Keys are checked before anything is stored: odd ones are refused, not
// escaped.
func ExampleCheckKey() {
	for _, key := range []string{"reports/r-42.csv", "../secret", "a//b", "report 1.csv"} {
		err := blob.CheckKey(key)
		fmt.Println(key, err == nil, errors.Is(err, blob.ErrInvalidKey))
	}
	// Output:
	// reports/r-42.csv true false
	// ../secret false true
	// a//b false true
	// report 1.csv false true
}
