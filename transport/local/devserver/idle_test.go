package devserver_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// TestKeepAliveWithoutUpgradeIsClosed is finding 8 of issue 11: an HTTP
// keep-alive connection that never upgrades is closed after the HTTP idle
// timeout.
func TestKeepAliveWithoutUpgradeIsClosed(t *testing.T) {
	t.Parallel()
	info := start(t, devserver.Config{
		DataDir: t.TempDir(), Store: memory.New(), Secret: []byte("0123456789abcdef0123456789abcdef"),
		HTTPIdleTimeout: 200 * time.Millisecond,
	})
	conn, err := net.Dial("tcp", info.Addr)
	require.NoError(t, err)
	defer conn.Close() //nolint:errcheck // test cleanup
	// A generous deadline: the server must close the connection long
	// before it.
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	_, err = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: "+info.Addr+"\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusUpgradeRequired, resp.StatusCode)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	require.False(t, resp.Close, "the server keeps the connection alive")
	// Then nothing more is sent: the server closes the connection (EOF),
	// rather than the read deadline expiring.
	_, err = br.ReadByte()
	require.ErrorIs(t, err, io.EOF)
}
