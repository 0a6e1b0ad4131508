package devserver_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// TestManagementAPIOnItsOwnAddress is finding 7 of issue 11: a client of
// /ws that learns a connection id cannot post a forged frame to it through
// the WebSocket listener; the Management API answers only on its own
// loopback address.
func TestManagementAPIOnItsOwnAddress(t *testing.T) {
	t.Parallel()
	var id string
	ids := make(chan string, 1)
	whoami := streamer.Plugin{Name: "whoami", Actions: []streamer.Action{{
		Name: "whoami",
		Handler: streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
			select {
			case ids <- req.ConnectionID:
			default:
			}
			return "ok", nil
		}),
	}}}
	info := start(t, devserver.Config{
		DataDir: t.TempDir(), Store: memory.New(), Secret: []byte("0123456789abcdef0123456789abcdef"),
		Plugins: []streamer.Plugin{whoami},
	})
	require.NotEmpty(t, info.ManagementURL)
	require.NotEqual(t, info.URL, info.ManagementURL)

	c, err := client.Dial(context.Background(), info.WebSocketURL, client.Options{Token: info.Token})
	require.NoError(t, err)
	defer c.Close() //nolint:errcheck // test cleanup
	_, err = c.Request(context.Background(), "whoami", nil)
	require.NoError(t, err)
	id = <-ids
	require.NotEmpty(t, id)

	forged := `{"type":"complete","id":"x","result":"forged"}`
	for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		for _, path := range []string{"/@connections/" + id, "/local/@connections/" + id} {
			req, err := http.NewRequestWithContext(context.Background(), method, info.URL+path, strings.NewReader(forged))
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			require.Contains(t, []int{http.StatusForbidden, http.StatusNotFound}, resp.StatusCode, "%s %s", method, path)
			if path == "/@connections/"+id {
				require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s %s", method, path)
			}
		}
	}

	// The Management API itself works on its own address.
	resp, err := http.Get(info.ManagementURL + "/@connections/" + id) //nolint:noctx // a test
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// And the connection is still usable: nothing forged reached it.
	res, err := c.Request(context.Background(), "whoami", nil)
	require.NoError(t, err)
	require.JSONEq(t, `"ok"`, string(res))
}
