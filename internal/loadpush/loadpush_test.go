package loadpush

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		p    Payload
		want string
	}{
		{Payload{Rate: 10, DurationMs: 1000}, ""},
		{Payload{Rate: 1000, DurationMs: 10000}, ""},
		{Payload{Rate: 0, DurationMs: 1000}, "rate 0"},
		{Payload{Rate: 1001, DurationMs: 1000}, "rate 1001"},
		{Payload{Rate: 10, DurationMs: 0}, "duration_ms 0"},
		{Payload{Rate: 10, DurationMs: 60001}, "duration_ms 60001"},
		{Payload{Rate: 1000, DurationMs: 10001}, "10001 events"},
	} {
		err := tc.p.Check()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.p, err, tc.want)
		}
		if verr := tc.p.Validate(); (verr == nil) != (err == nil) {
			t.Errorf("%+v: Validate %v but Check %v", tc.p, verr, err)
		}
	}
	if n := (Payload{Rate: 3, DurationMs: 100}).Events(); n != 1 {
		t.Errorf("a run shorter than an interval reports %d events, want 1", n)
	}
}

func TestRunEmitsInOrderWithMetadata(t *testing.T) {
	var got []int
	before := time.Now().UnixNano()
	err := Run(context.Background(), Payload{Rate: 200, DurationMs: 50}, func(i int, md map[string]string) error {
		if md[KeyIndex] != strconv.Itoa(i) {
			t.Errorf("event %d has index %q", i, md[KeyIndex])
		}
		if sent, err := strconv.ParseInt(md[KeySent], 10, 64); err != nil || sent < before {
			t.Errorf("event %d has send time %q", i, md[KeySent])
		}
		got = append(got, i)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 || got[0] != 1 || got[9] != 10 {
		t.Fatalf("events %v, want 1..10", got)
	}
	stop := errors.New("stop")
	n := 0
	if err := Run(context.Background(), Payload{Rate: 100, DurationMs: 1000}, func(int, map[string]string) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("an emit error must stop the run: %v after %d", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Run(ctx, Payload{Rate: 1, DurationMs: 60000}, func(int, map[string]string) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("a canceled run: %v", err)
	}
	if err := Run(context.Background(), Payload{}, nil); err == nil {
		t.Fatal("a bad payload ran")
	}
}
