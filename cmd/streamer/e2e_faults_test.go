package main_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
)

// TestE2EThrottledDynamoDB: an SDK middleware throttles a fraction (20% in
// scripts/test.sh) of the DynamoDB calls of `streamer dev --aws-local`.
// Nothing is lost or duplicated, and no frame is answered INTERNAL_ERROR or
// UNAVAILABLE: the SDK's retries absorb the throttling. (The rest of the
// suite runs against throttled servers too.) Runs only with
// STREAMER_E2E_RUNTIME=aws-local and STREAMER_E2E_DYNAMODB_THROTTLE set.
func TestE2EThrottledDynamoDB(t *testing.T) {
	if faultThrottle() == "" {
		t.Skip("set STREAMER_E2E_RUNTIME=aws-local and STREAMER_E2E_DYNAMODB_THROTTLE=0.2 to run it")
	}
	t.Parallel()
	s := startDev(t)

	const (
		conns    = 3
		requests = 4 // async requests per connection
		echoes   = 3 // sync requests per connection
		steps    = 3
	)
	payload := map[string]int{"ms": 600, "steps": steps}
	wantResult := fmt.Sprintf(`{"steps":%d,"ms":600}`, steps)
	type peer struct {
		r   *rawConn
		ids []string
	}
	peers := make([]peer, conns)
	sub := uid("throttled")
	tok := token(t, sub, "")
	for i := range peers {
		p := peer{r: dialRaw(t, s, tok)}
		for j := range requests {
			id := fmt.Sprintf("%s-%d-%d", sub, i, j)
			p.ids = append(p.ids, id)
			p.r.request("delay", id, payload)
		}
		for j := range echoes {
			p.r.request("echo", fmt.Sprintf("%s-echo-%d-%d", sub, i, j), map[string]int{"n": j})
		}
		peers[i] = p
	}

	// Every message about every request, until each has its terminal
	// event and each echo its response. Any error fails the test.
	for i, p := range peers {
		events := map[string][]streamer.Message{}
		acked := map[string]bool{}
		open := requests + echoes
		for open > 0 {
			m := p.r.read()
			require.Nil(t, m.Error, "connection %d: %+v (error %+v)", i, m, m.Error)
			switch m.Type {
			case streamer.TypeResponse:
				require.True(t, m.Success)
				require.True(t, strings.HasPrefix(m.RequestID, sub+"-echo-"), "%+v", m)
				open--
			case streamer.TypeAcknowledgment:
				require.False(t, acked[m.RequestID], "two acknowledgments of %s", m.RequestID)
				acked[m.RequestID] = true
			default:
				require.Positive(t, m.Seq, "%+v", m)
				events[m.RequestID] = append(events[m.RequestID], m)
				if m.Terminal() {
					open--
				}
			}
		}
		for _, id := range p.ids {
			require.True(t, acked[id], "%s was not acknowledged", id)
			checkThrottledStream(t, dedupe(t, events[id]), steps, wantResult)
		}
	}

	// The stored streams, replayed on a new connection: the same events,
	// each stored once.
	r := dialRaw(t, s, tok)
	for _, p := range peers {
		for _, id := range p.ids {
			r.resume(id, 0)
			checkThrottledStream(t, r.collect(id, 0), steps, wantResult)
			st := r.status(id)
			require.Equal(t, streamer.TypeStatus, st.Type, "%+v", st)
			require.Equal(t, "succeeded", st.Status)
		}
	}

	// The injection did happen. (Once stopped, the server's output has
	// been read to its end.)
	s.stop()
	require.Contains(t, s.stdout.From(0), "faults:", "the banner announces the fault injection")
	m := regexp.MustCompile(`fault injection: DynamoDB calls throttled.*\bthrottled=(\d+)`).FindStringSubmatch(s.stderr.From(0))
	require.NotNil(t, m, "no fault injection summary in the server's log")
	n, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	require.Positive(t, n, "no DynamoDB call was throttled")
	t.Logf("%d DynamoDB calls throttled", n)
}

// dedupe drops repeated deliveries of a seq (delivery is at least once),
// checking that they are copies, and returns the events in arrival order.
func dedupe(t *testing.T, events []streamer.Message) []streamer.Message {
	t.Helper()
	seen := map[int64]streamer.Message{}
	var out []streamer.Message
	for _, m := range events {
		if prev, ok := seen[m.Seq]; ok {
			require.Equal(t, prev, m, "seq %d delivered twice with different contents", m.Seq)
			continue
		}
		seen[m.Seq] = m
		out = append(out, m)
	}
	return out
}

// checkThrottledStream checks a delay request's stream: seqs contiguous
// from 1, one terminal event, the last, a complete with the result; no
// progress step twice.
func checkThrottledStream(t *testing.T, events []streamer.Message, steps int, result string) {
	t.Helper()
	progress := checkStream(t, events, 1)
	require.LessOrEqual(t, len(progress), steps)
	msgs := map[string]bool{}
	for _, p := range progress {
		require.False(t, msgs[p.Message], "progress %q stored twice", p.Message)
		msgs[p.Message] = true
	}
	done := events[len(events)-1]
	require.Equal(t, streamer.TypeComplete, done.Type, "%+v", done)
	require.JSONEq(t, result, string(done.Result))
}

// The fault injection settings are checked, and need --aws-local: the
// embedded runtime has no DynamoDB to throttle.
func TestCLIFaultSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"throttle without --aws-local", []string{"STREAMER_FAULT_DYNAMODB_THROTTLE=0.2"}, nil, "needs --aws-local"},
		{"throttle above 1", []string{"STREAMER_FAULT_DYNAMODB_THROTTLE=2"}, []string{"--aws-local"}, "STREAMER_FAULT_DYNAMODB_THROTTLE"},
		{"bad seed", []string{"STREAMER_FAULT_DYNAMODB_THROTTLE=0.2", "STREAMER_FAULT_SEED=x"}, []string{"--aws-local"}, "STREAMER_FAULT_SEED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append([]string{"STREAMER_JWT_SECRET=" + testSecret}, tc.env...)
			res := runCLI(t, env, append([]string{"dev", "--addr", "127.0.0.1:0"}, tc.args...)...)
			require.Equal(t, 2, res.code, "stderr: %s", res.stderr)
			require.Contains(t, res.stderr, tc.want)
		})
	}
}

// requireSteps checks the progress events of a delay request of n steps:
// one per step, "step k/n" at 100k/n percent. With DynamoDB throttled
// (faultThrottle), a write slowed by retries lets the server coalesce the
// steps that fell due meanwhile, as docs/protocol.md section 3 allows: the
// steps then go forward, each at most once, at most n of them.
func requireSteps(t *testing.T, progress []streamer.Message, n int) {
	t.Helper()
	exact := faultThrottle() == ""
	if exact {
		require.Len(t, progress, n, "one progress event per step")
	}
	require.NotEmpty(t, progress)
	require.LessOrEqual(t, len(progress), n)
	prev := 0
	for i, p := range progress {
		var k, of int
		_, err := fmt.Sscanf(p.Message, "step %d/%d", &k, &of)
		require.NoError(t, err, "progress message %q", p.Message)
		require.Equal(t, n, of, "progress message %q", p.Message)
		require.Greater(t, k, prev, "steps go forward, each once: %q after step %d", p.Message, prev)
		if exact {
			require.Equal(t, i+1, k, "progress message %q", p.Message)
		}
		require.InDelta(t, float64(100*k)/float64(n), p.Percentage, 1e-9, "percentage of %q", p.Message)
		prev = k
	}
}
