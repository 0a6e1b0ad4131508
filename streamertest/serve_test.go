package streamertest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
	"github.com/streamer-go/streamer/plugins"
	"github.com/streamer-go/streamer/streamertest"
)

// Serve runs an app's plugins on the embedded runtime over a real
// WebSocket: sync and async calls, progress, validation errors, and the
// blob store served for downloads.
func TestServe(t *testing.T) {
	t.Parallel()
	srv := streamertest.Serve(t, plugins.All)
	c := srv.Dial(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	res, err := c.Request(ctx, "echo", map[string]string{"hi": "there"})
	if err != nil || string(res) != `{"hi":"there"}` {
		t.Fatalf("echo: %s, %v", res, err)
	}

	var progress []client.Progress
	res, err = c.Request(ctx, "delay", map[string]int{"ms": 10, "steps": 3},
		client.WithProgress(func(p client.Progress) { progress = append(progress, p) }))
	// Progress events close together may be coalesced: the last one stays.
	if err != nil || string(res) != `{"steps":3,"ms":10}` || len(progress) == 0 || progress[len(progress)-1].Percentage != 100 {
		t.Fatalf("delay: %s, %v, progress %+v", res, err, progress)
	}

	_, err = c.Request(ctx, "delay", map[string]int{"ms": 10})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != streamer.CodeValidation {
		t.Fatalf("delay without steps: %v", err)
	}

	res, err = c.Request(ctx, "generate_report", map[string]string{"startDate": "2024-01-01", "endDate": "2024-01-02"})
	if err != nil {
		t.Fatalf("generate_report: %v", err)
	}
	var report struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(res, &report); err != nil || report.URL == "" {
		t.Fatalf("generate_report result %s: %v", res, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, report.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("download %s: %d %q", report.URL, resp.StatusCode, body)
	}
}

// A plugin list that fails to build fails the server's start.
func TestServeBuildError(t *testing.T) {
	t.Parallel()
	ft := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }() // fakeTB.Fatalf ends the goroutine
		streamertest.Serve(ft, func(context.Context, streamer.Env) ([]streamer.Plugin, error) {
			return nil, errors.New("STREAMER_THING is required")
		})
	}()
	<-done
	if !strings.Contains(ft.fatal, "STREAMER_THING is required") {
		t.Fatalf("Serve failed with %q, want the plugins' error", ft.fatal)
	}
}

type fakeTB struct {
	testing.TB
	fatal string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	panic("fatal")
}
