package report_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/blob/localblob"
	"github.com/streamer-go/streamer/plugins/report"
)

// New builds the plugin on a blob store (here a local directory served
// over HTTP, as the dev server does); its handler stores a report and
// completes with a signed URL that downloads it.
func ExampleNew() {
	dir, err := os.MkdirTemp("", "blobs")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = os.RemoveAll(dir) }()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux) // listens on 127.0.0.1
	defer srv.Close()
	store, err := localblob.New(localblob.Config{Dir: dir, BaseURL: srv.URL + "/blobs/"})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux.Handle("/blobs/", http.StripPrefix("/blobs", store))

	p, err := report.New(report.Config{
		Store:      store,
		StageDelay: -1, // no pause between stages
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	a := p.Actions[0]
	fmt.Println(p.Name, a.Name, a.Options.Mode)

	req := &streamer.Request{
		ID:      "r-42",
		Action:  a.Name,
		Payload: json.RawMessage(`{"startDate":"2024-01-01","endDate":"2024-01-07"}`),
	}
	rep := streamer.ReporterFunc(func(_ context.Context, u streamer.Update) error {
		fmt.Printf("%g%% %s\n", u.Percentage, u.Message)
		return nil
	})
	out, err := a.Handler.Serve(streamer.WithRequest(context.Background(), req), req, rep)
	if err != nil {
		fmt.Println(err)
		return
	}
	res := out.(report.Result)
	fmt.Println(res.Rows, strings.HasPrefix(res.URL, srv.URL+"/blobs/reports/r-42-"))

	for _, u := range []string{res.URL, strings.Split(res.URL, "?")[0]} {
		hreq, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		first, _, _ := strings.Cut(string(body), "\n")
		if resp.StatusCode != http.StatusOK {
			first = ""
		}
		fmt.Println(resp.StatusCode, first)
	}
	// Output:
	// report generate_report async
	// 10% querying data
	// 40% aggregating
	// 70% rendering
	// 90% uploading
	// 168 true
	// 200 date,time,value
	// 403
}
