//go:build !race

package streamer_test

// manyJobs is how many waiting jobs TestManyWaitingJobsRunAtOnce runs at
// once.
const manyJobs = 10000
