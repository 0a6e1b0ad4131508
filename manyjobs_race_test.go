//go:build race

package streamer_test

// manyJobs is 2,000 under the race detector, which allows at most 8,128
// goroutines alive at once.
const manyJobs = 2000
