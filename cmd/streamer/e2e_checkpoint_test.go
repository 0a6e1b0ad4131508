package main_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/plugins/demo"
)

// Checkpoints survive a crash: streamer dev is killed with SIGKILL in the
// middle of a checkpointed job and restarted on the same data dir; the job
// continues from its last checkpoint (a continued event), not from the
// start, and no item before that checkpoint is done again.
func TestE2EKillResumesFromCheckpoint(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	tok := token(t, uid("ckpt"), "")
	r := dialRaw(t, s, tok)
	id := uid("ckpt")
	r.ack("checkpointed", id, map[string]int{"items": 30, "item_ms": 100})

	var seen []streamer.Message
	for items := 0; items < 8; {
		m := r.readFor(id)
		require.False(t, m.Terminal(), "the job ended before the crash: %+v", m)
		if m.Type == streamer.TypeProgress {
			items++
		}
		seen = append(seen, m)
	}
	s.kill()
	for {
		_, data, err := r.readRaw()
		if err != nil {
			break
		}
		var m streamer.Message
		require.NoError(t, json.Unmarshal(data, &m))
		require.False(t, m.Terminal(), "the job ended before the crash: %s", data)
		seen = append(seen, m)
	}
	ns := s.restart(t)

	r2 := dialRaw(t, ns, tok)
	last := seen[len(seen)-1].Seq
	r2.resume(id, last)
	all := append(slices.Clone(seen), r2.collect(id, last)...)
	checkStream(t, all, 1)
	end := all[len(all)-1]
	require.Equal(t, streamer.TypeComplete, end.Type, "%+v", end.Error)
	var res demo.CheckpointedResult
	require.NoError(t, json.Unmarshal(end.Result, &res))
	require.Equal(t, 30, res.Items)
	require.Equal(t, 2, res.Runs, "the run before the crash and the one after")

	types, msgs := make([]string, len(all)), make([]string, len(all))
	for i, m := range all {
		types[i], msgs[i] = m.Type, m.Message
	}
	reported, continued, err := demo.CheckCheckpointed(types, msgs, 30)
	require.NoError(t, err, "no item before the checkpoint is done again")
	require.Equal(t, 30, reported)
	require.Equal(t, 1, continued, "the run after the restart continued from the checkpoint")
}
