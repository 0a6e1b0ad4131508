package local_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/transport/local"
)

func sdkClient(endpoint string) *apigatewaymanagementapi.Client {
	return apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       "us-east-1",
		Credentials:  aws.AnonymousCredentials{},
	})
}

func TestManagementAPIWithSDK(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, local.Config{})
	c := b.dial(t, &websocket.DialOptions{HTTPHeader: http.Header{"User-Agent": {"test-agent/1.0"}}})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	for _, endpoint := range []string{b.srv.URL, b.srv.URL + "/dev"} {
		api := sdkClient(endpoint)

		// PostToConnection delivers.
		_, err := api.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
			ConnectionId: aws.String(c.id),
			Data:         []byte(`{"type":"pong"}`),
		})
		require.NoError(t, err, endpoint)
		assert.Equal(t, `{"type":"pong"}`, string(c.next(t)))

		// GetConnection describes it.
		out, err := api.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: aws.String(c.id)})
		require.NoError(t, err, endpoint)
		require.NotNil(t, out.ConnectedAt)
		require.NotNil(t, out.LastActiveAt)
		assert.WithinDuration(t, time.Now(), *out.ConnectedAt, time.Minute)
		assert.False(t, out.LastActiveAt.Before(*out.ConnectedAt))
		require.NotNil(t, out.Identity)
		assert.Equal(t, "127.0.0.1", aws.ToString(out.Identity.SourceIp))
		assert.Equal(t, "test-agent/1.0", aws.ToString(out.Identity.UserAgent))

		// Too large: PayloadTooLargeException, still connected.
		_, err = api.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
			ConnectionId: aws.String(c.id),
			Data:         bytes.Repeat([]byte("a"), local.DefaultMaxMessageSize+1),
		})
		var tooLarge *types.PayloadTooLargeException
		require.ErrorAs(t, err, &tooLarge, endpoint)

		// Unknown id: GoneException, for every operation.
		_, err = api.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
			ConnectionId: aws.String("unknown"),
			Data:         []byte("x"),
		})
		var gone *types.GoneException
		require.ErrorAs(t, err, &gone, endpoint)
		_, err = api.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: aws.String("unknown")})
		require.ErrorAs(t, err, &gone, endpoint)
		_, err = api.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String("unknown")})
		require.ErrorAs(t, err, &gone, endpoint)
	}

	// DeleteConnection closes with 1000; then the connection is gone.
	api := sdkClient(b.srv.URL)
	_, err := api.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String(c.id)})
	require.NoError(t, err)
	assert.Equal(t, websocket.StatusNormalClosure, c.requireClosed(t))
	b.rec.requireDisconnectedOnce(t, c.id)
	_, err = api.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
		ConnectionId: aws.String(c.id),
		Data:         []byte("x"),
	})
	var gone *types.GoneException
	require.ErrorAs(t, err, &gone)
	assert.False(t, errors.As(err, new(*types.PayloadTooLargeException)))
}

func TestManagementAPIRaw(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, local.Config{})
	c := b.dial(t, nil)

	resp, err := http.Post(b.srv.URL+"/prod/@connections/"+c.id, "application/octet-stream", strings.NewReader("hi"))
	require.NoError(t, err)
	body := readBody(t, resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, body)
	assert.Equal(t, "hi", string(c.next(t)))

	resp, err = http.Post(b.srv.URL+"/@connections/nope", "application/octet-stream", strings.NewReader("hi"))
	require.NoError(t, err)
	body = readBody(t, resp)
	assert.Equal(t, http.StatusGone, resp.StatusCode)
	assert.Equal(t, "GoneException", resp.Header.Get("X-Amzn-Errortype"))
	assert.JSONEq(t, `{"message":"The connection is gone"}`, body)

	req, err := http.NewRequest(http.MethodPut, b.srv.URL+"/@connections/"+c.id, nil)
	require.NoError(t, err)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = readBody(t, resp)
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

	req, err = http.NewRequest(http.MethodDelete, b.srv.URL+"/@connections/"+c.id, nil)
	require.NoError(t, err)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = readBody(t, resp)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, websocket.StatusNormalClosure, c.requireClosed(t))
}
