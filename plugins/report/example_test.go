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
	"github.com/streamer-go/streamer/plugins/report"
)

// New builds the plugin; its handler writes a report and completes with its
// URL. A server mounts FileServer where BaseURL points.
func ExampleNew() {
	dir, err := os.MkdirTemp("", "reports")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = os.RemoveAll(dir) }()

	p, err := report.New(report.Config{
		Dir:        dir,
		BaseURL:    "http://127.0.0.1:8080/reports/",
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
	fmt.Println(res.Rows, strings.HasPrefix(res.URL, "http://127.0.0.1:8080/reports/r-42-"))
	// Output:
	// report generate_report async
	// 10% querying data
	// 40% aggregating
	// 70% rendering
	// 90% uploading
	// 168 true
}

// FileServer serves the reports read-only; mount it with http.StripPrefix.
func ExampleFileServer() {
	dir, err := os.MkdirTemp("", "reports")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if err := os.WriteFile(dir+"/r-1.csv", []byte("date,time,value\n"), 0o644); err != nil {
		fmt.Println(err)
		return
	}

	mux := http.NewServeMux()
	mux.Handle("/reports/", http.StripPrefix("/reports", report.FileServer(dir)))
	srv := httptest.NewServer(mux) // listens on 127.0.0.1
	defer srv.Close()

	for _, p := range []string{"/reports/r-1.csv", "/reports/", "/reports/..%2fr-1.csv"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			fmt.Printf("%s %d %q\n", p, resp.StatusCode, body)
		} else {
			fmt.Println(p, resp.StatusCode)
		}
	}
	// Output:
	// /reports/r-1.csv 200 "date,time,value\n"
	// /reports/ 404
	// /reports/..%2fr-1.csv 404
}
