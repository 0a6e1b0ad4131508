package bolt_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/bolt"
)

// killChildEnv, when set to a database path, makes the test binary the
// writer of TestKill9LosesNoAcknowledgedEvent instead of running tests.
const killChildEnv = "STREAMER_BOLT_KILL_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(killChildEnv); path != "" {
		os.Exit(killChild(path))
	}
	os.Exit(m.Run())
}

// killJobs is how many requests the killed writer appends to at once.
const killJobs = 50

func killKey(i int) storage.Key {
	return storage.Key{Tenant: "t", Subject: "s", ID: "job-" + strconv.Itoa(i)}
}

// killChild creates killJobs running requests, prints "ready", then appends
// events to all of them concurrently, printing "ack <job> <seq>" after
// each AppendEvent that returned nil, until it is killed (or a minute
// passes).
func killChild(path string) int {
	ctx := context.Background()
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	now := time.Now()
	for i := range killJobs {
		k := killKey(i)
		if err := s.CreateRequest(ctx, storage.Request{Key: k, Status: storage.StatusQueued, CreatedAt: now}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if _, err := s.ClaimRequest(ctx, k, storage.Claim{Now: now, LeaseUntil: now.Add(time.Hour)}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	var out sync.Mutex
	say := func(line string) {
		out.Lock()
		defer out.Unlock()
		_, _ = os.Stdout.WriteString(line + "\n") // one write: a line is never torn
	}
	say("ready")
	stop := time.Now().Add(time.Minute)
	var wg sync.WaitGroup
	failed := make(chan error, killJobs)
	for i := range killJobs {
		wg.Go(func() {
			k := killKey(i)
			for seq := int64(1); time.Now().Before(stop); seq++ {
				ev := storage.Event{Seq: seq, Type: "progress", Data: []byte(fmt.Sprintf(`{"job":%d,"seq":%d}`, i, seq)), CreatedAt: time.Now()}
				if err := s.AppendEvent(ctx, k, 1, ev, 0); err != nil {
					failed <- err
					return
				}
				say(fmt.Sprintf("ack %d %d", i, seq))
			}
		})
	}
	wg.Wait()
	close(failed)
	for err := range failed {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

// TestKill9LosesNoAcknowledgedEvent runs a writer process that appends
// events to 50 requests concurrently and prints each acknowledged one,
// kills it with SIGKILL in the middle, and checks that the file opens
// clean, passes bbolt's consistency check, and holds every acknowledged
// event, each request's log a gapless prefix.
func TestKill9LosesNoAcknowledgedEvent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "streamer.db")
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	acked := make([]int64, killJobs) // the highest acknowledged seq of each job
	count := 0
	record := func(line string) {
		if line == "ready" {
			return
		}
		var job int
		var seq int64
		_, err := fmt.Sscanf(line, "ack %d %d", &job, &seq)
		require.NoError(t, err, "line %q", line)
		require.Equal(t, acked[job]+1, seq, "job %d acknowledged in order", job)
		acked[job] = seq
		count++
	}
	// Kill it once it has acknowledged a few thousand events: more than
	// one flush of the event log holds, so some are in the file and some
	// in the log only.
	deadline := time.After(2 * time.Minute)
	for count < 6000 {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "the writer exited early: %s", stderr.String())
			record(line)
		case <-deadline:
			t.Fatalf("the writer acknowledged only %d events in 2 minutes: %s", count, stderr.String())
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	// What it printed before it died was acknowledged too.
	for line := range lines {
		record(line)
	}
	err = cmd.Wait()
	killed = true
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr)
	status, ok := exitErr.Sys().(syscall.WaitStatus)
	require.True(t, ok)
	require.True(t, status.Signaled() && status.Signal() == syscall.SIGKILL, "killed by SIGKILL, not ended: %v", err)
	t.Logf("%d events acknowledged before the kill", count)
	segs, err := filepath.Glob(path + ".wal.*")
	require.NoError(t, err)
	require.NotEmpty(t, segs, "the killed writer left its event log")

	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: wait, ReadOnly: true})
	require.NoError(t, err)
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}), "bbolt's consistency check")
	require.NoError(t, db.Close())

	s, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err, "opens clean")
	defer func() { require.NoError(t, s.Close()) }()
	for i := range killJobs {
		evs, err := s.ReadEvents(t.Context(), killKey(i), 0, 0)
		require.NoError(t, err)
		require.GreaterOrEqual(t, int64(len(evs)), acked[i], "job %d: every acknowledged event is stored", i)
		for j, ev := range evs {
			require.Equal(t, int64(j+1), ev.Seq, "job %d", i)
			require.JSONEq(t, fmt.Sprintf(`{"job":%d,"seq":%d}`, i, j+1), string(ev.Data))
		}
	}
}

// TestConcurrentAppends appends from one goroutine per request, 100
// requests at once, and reads each request's log back: every event once,
// in order, with its data. The writes share commits.
func TestConcurrentAppends(t *testing.T) {
	t.Parallel()
	const requests, events = 100, 30
	ctx := t.Context()
	s := open(t)
	now := time.Now()
	keys := make([]storage.Key, requests)
	for i := range keys {
		keys[i] = storage.Key{Tenant: "t", Subject: "s", ID: "r" + strconv.Itoa(i)}
		require.NoError(t, s.CreateRequest(ctx, storage.Request{Key: keys[i], Status: storage.StatusQueued, CreatedAt: now}))
		_, err := s.ClaimRequest(ctx, keys[i], storage.Claim{Now: now, LeaseUntil: now.Add(time.Hour)})
		require.NoError(t, err)
	}
	commits := bolt.Commits(s)
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for i, k := range keys {
		wg.Go(func() {
			for seq := int64(1); seq <= events; seq++ {
				ev := storage.Event{Seq: seq, Type: "progress", Data: fmt.Appendf(nil, `{"r":%d,"seq":%d}`, i, seq), CreatedAt: now}
				if err := s.AppendEvent(ctx, k, 1, ev, 0); err != nil {
					errs <- fmt.Errorf("request %d seq %d: %w", i, seq, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	n := bolt.Commits(s) - commits
	t.Logf("%d events in %d commits", requests*events, n)
	require.Less(t, n, int64(requests*events), "concurrent appends shared commits")
	for i, k := range keys {
		evs, err := s.ReadEvents(ctx, k, 0, 0)
		require.NoError(t, err)
		require.Len(t, evs, events, "request %d", i)
		for j, ev := range evs {
			require.Equal(t, int64(j+1), ev.Seq)
			require.JSONEq(t, fmt.Sprintf(`{"r":%d,"seq":%d}`, i, j+1), string(ev.Data))
		}
	}
}

// wait is the deadline of things that should be quick, generous for a
// loaded machine.
const wait = 30 * time.Second
