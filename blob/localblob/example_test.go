package localblob_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/streamer-go/streamer/blob"
	"github.com/streamer-go/streamer/blob/localblob"
)

// A Store is mounted where its BaseURL points; its URLs download the
// object until they expire, and nothing else.
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

	st, err := localblob.New(localblob.Config{Dir: dir, BaseURL: srv.URL + "/blobs/"})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux.Handle("/blobs/", http.StripPrefix("/blobs", st))

	ctx := context.Background()
	err = st.Put(ctx, "reports/r-1.csv", strings.NewReader("date,value\n2024-01-01,1\n"),
		blob.PutOptions{ContentType: "text/csv", ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		fmt.Println(err)
		return
	}
	u, err := st.URL(ctx, "reports/r-1.csv", time.Now().Add(time.Hour))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, target := range []string{u, strings.Split(u, "?")[0], strings.Replace(u, "r-1", "r-2", 1)} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			fmt.Printf("%d %s %q\n", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		} else {
			fmt.Println(resp.StatusCode)
		}
	}
	_, err = st.URL(ctx, "../etc/passwd", time.Now().Add(time.Hour))
	fmt.Println(err)
	// Output:
	// 200 text/csv "date,value\n2024-01-01,1\n"
	// 403
	// 403
	// blob: invalid key: "../etc/passwd" has a segment starting with '.'
}
