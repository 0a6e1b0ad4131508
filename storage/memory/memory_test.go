package memory_test

import (
	"testing"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/storage/storagetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(*testing.T) storage.Store { return memory.New() })
}

// TestConformanceShared runs the suite with one store for every subtest, as
// a shared DynamoDB table would be.
func TestConformanceShared(t *testing.T) {
	t.Parallel()
	shared := memory.New()
	storagetest.Run(t, func(*testing.T) storage.Store { return shared })
}
