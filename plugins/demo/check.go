package demo

import (
	"fmt"

	"github.com/streamer-go/streamer"
)

// CheckCheckpointed checks the event stream of a checkpointed request of
// items items, given as each event's type and message in seq order (stored
// or received; complete or not): every progress message is "item i/N",
// items come in order, and after each continued event the work resumes at
// the last item reported before it or the one after, never further back:
// no item before a checkpoint is done again. It returns how many items
// were reported at least once and how many continued events there were,
// or an error naming the first violation.
func CheckCheckpointed(types, messages []string, items int) (reported, continued int, err error) {
	if len(types) != len(messages) {
		return 0, 0, fmt.Errorf("demo: %d types for %d messages", len(types), len(messages))
	}
	seen := map[int]int{}
	last := 0
	for i, typ := range types {
		switch typ {
		case streamer.TypeContinued:
			continued++
			continue
		case streamer.TypeProgress:
		default:
			continue
		}
		var item, total int
		if _, err := fmt.Sscanf(messages[i], "item %d/%d", &item, &total); err != nil || total != items {
			return 0, 0, fmt.Errorf("demo: event %d: progress message %q is not item i/%d", i, messages[i], items)
		}
		if item < last {
			return 0, 0, fmt.Errorf("demo: event %d: item %d after item %d: redone beyond the last checkpoint", i, item, last)
		}
		if item > last+1 {
			return 0, 0, fmt.Errorf("demo: event %d: item %d after item %d: items out of order", i, item, last)
		}
		if seen[item]++; seen[item] > 2 {
			return 0, 0, fmt.Errorf("demo: event %d: item %d done more than twice", i, item)
		}
		last = item
	}
	return len(seen), continued, nil
}
