package s3blob_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/streamer-go/streamer/blob"
	"github.com/streamer-go/streamer/blob/s3blob"
	"github.com/streamer-go/streamer/blob/s3blob/s3local"
)

// A Store of a bucket; here on a local S3 server, which needs path-style
// addressing. On AWS, AWS comes from config.LoadDefaultConfig.
func ExampleNew() {
	fake, err := s3local.New(s3local.Config{Buckets: []string{"my-bucket"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(fake) // listens on 127.0.0.1
	defer srv.Close()

	st, err := s3blob.New(s3blob.Config{
		AWS: aws.Config{
			Region:       "us-east-1",
			Credentials:  credentials.NewStaticCredentialsProvider(s3local.DefaultAccessKeyID, s3local.DefaultSecretAccessKey, ""),
			BaseEndpoint: aws.String(srv.URL),
		},
		Bucket:    "my-bucket",
		PathStyle: true,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	if err := st.Put(ctx, "reports/r-1.csv", strings.NewReader("a,b\n1,2\n"), blob.PutOptions{ContentType: "text/csv"}); err != nil {
		fmt.Println(err)
		return
	}
	u, err := st.URL(ctx, "reports/r-1.csv", time.Now().Add(time.Hour))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, target := range []string{u, strings.Split(u, "?")[0]} {
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
	// Output:
	// 200 text/csv "a,b\n1,2\n"
	// 403
}
