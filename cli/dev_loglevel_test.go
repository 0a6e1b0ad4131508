package cli_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/cli"
)

// `streamer dev --log-level` defaults to STREAMER_LOG_LEVEL, as the
// Lambdas' level; a bad value fails at start, naming it.
func TestDevLogLevelFromEnv(t *testing.T) {
	t.Setenv("STREAMER_LOG_LEVEL", "loud")
	var out, errb bytes.Buffer
	// Canceled: were the level accepted, the server would stop at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	code := cli.Run(ctx, []string{"dev", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir()}, &out, &errb,
		func(context.Context, streamer.Env) ([]streamer.Plugin, error) { return nil, nil })
	require.Equal(t, 2, code, "a usage error: %s", errb.String())
	require.Contains(t, errb.String(), "STREAMER_LOG_LEVEL")
	require.Contains(t, errb.String(), `"loud"`)
}
