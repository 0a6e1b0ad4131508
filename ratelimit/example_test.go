package ratelimit_test

import (
	"fmt"

	"github.com/streamer-go/streamer/ratelimit"
)

func ExampleParseRule() {
	r, err := ratelimit.ParseRule("10/s,burst=20")
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Rate, r.Per, r.Burst, r.FillTime())
	// Output: 10 1s 20 2s
}
