package demo_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/plugins/demo"
)

func TestCheckCheckpointed(t *testing.T) {
	t.Parallel()
	types := []string{"started", "progress", "progress", "continued", "progress", "progress", "complete"}
	reported, continued, err := demo.CheckCheckpointed(types, []string{"", "item 1/3", "item 2/3", "", "item 2/3", "item 3/3", ""}, 3)
	require.NoError(t, err)
	require.Equal(t, 3, reported)
	require.Equal(t, 1, continued)

	for name, msgs := range map[string][]string{
		"started over": {"", "item 1/3", "item 2/3", "", "item 1/3", "item 2/3", ""},
		"skipped":      {"", "item 1/3", "item 3/3", "", "item 3/3", "item 3/3", ""},
		"wrong total":  {"", "item 1/4", "item 2/4", "", "item 3/4", "item 4/4", ""},
		"not an item":  {"", "step 1", "item 2/3", "", "item 3/3", "item 3/3", ""},
	} {
		_, _, err := demo.CheckCheckpointed(types, msgs, 3)
		require.Error(t, err, name)
	}
}
