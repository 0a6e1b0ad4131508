package sqsredrive

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5" //nolint:gosec // SQS's body checksum is MD5; it guards against corruption, not tampering
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// apiVersion is the SQS Query API's version.
const apiVersion = "2012-11-05"

// maxResponse bounds an SQS answer read into memory: ten messages of at
// most 256 KiB each, XML-escaped, fit well within it.
const maxResponse = 16 << 20

// QueueConfig configures [NewQueue].
type QueueConfig struct {
	// URL is the queue's URL, as SQS gives it
	// (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME). Required.
	URL string
	// AWS gives the credentials the requests are signed with
	// (config.LoadDefaultConfig). Required: its Credentials must be set.
	// The signing region is the queue URL's (sqs.REGION.amazonaws.com)
	// when the requests go there; else AWS.Region, else us-east-1.
	AWS aws.Config
	// Endpoint, when set, is where the requests go instead of the queue
	// URL's scheme and host (AWS_ENDPOINT_URL_SQS, such as a local
	// SQS-compatible server).
	Endpoint string
	// HTTPClient sends the requests; nil means one with a 60 s timeout
	// per request.
	HTTPClient *http.Client
}

// Queue is an SQS queue, spoken to in SQS's Query protocol: form-encoded
// POSTs signed with Signature Version 4, answered in XML. It is the
// protocol SQS has always served (the AWS SDKs' newer JSON protocol is an
// alternative, not a replacement). Only the calls a redrive needs are
// here. A Queue is safe for concurrent use. Calls are not retried: an
// error is returned as SQS answered it.
type Queue struct {
	url, endpoint, region string
	creds                 aws.CredentialsProvider
	httpc                 *http.Client
	signer                *v4.Signer
}

// Message is one message received from a [Queue].
type Message struct {
	// ID is SQS's MessageId.
	ID string
	// ReceiptHandle deletes the message ([Queue.Delete]) while it is
	// invisible after this receive.
	ReceiptHandle string
	// Body is the message's body.
	Body string
}

// Error is an error SQS answered with.
type Error struct {
	// Action is the call: ReceiveMessage, DeleteMessage, ...
	Action string
	// StatusCode is the HTTP status.
	StatusCode int
	// Code and Message are SQS's (such as
	// AWS.SimpleQueueService.NonExistentQueue).
	Code, Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("sqs: %s: %s: %s (HTTP %d)", e.Action, e.Code, e.Message, e.StatusCode)
}

// NewQueue returns the queue cfg names. It makes no call.
func NewQueue(cfg QueueConfig) (*Queue, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") == "" {
		return nil, fmt.Errorf("sqs: queue URL %q: want https://sqs.REGION.amazonaws.com/ACCOUNT/NAME", cfg.URL)
	}
	if cfg.AWS.Credentials == nil {
		return nil, errors.New("sqs: no AWS credentials (the AWS_* environment, or a profile)")
	}
	endpoint := u.Scheme + "://" + u.Host
	if cfg.Endpoint != "" {
		e, err := url.Parse(cfg.Endpoint)
		if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
			return nil, fmt.Errorf("sqs: endpoint %q: want http(s)://HOST[:PORT]", cfg.Endpoint)
		}
		endpoint = strings.TrimSuffix(cfg.Endpoint, "/")
	}
	region := ""
	// sqs.REGION.amazonaws.com[.cn]
	if parts := strings.Split(u.Hostname(), "."); cfg.Endpoint == "" && len(parts) >= 4 && parts[0] == "sqs" && parts[2] == "amazonaws" {
		region = parts[1]
	}
	region = cmp.Or(region, cfg.AWS.Region, "us-east-1")
	httpc := cfg.HTTPClient
	if httpc == nil {
		httpc = &http.Client{Timeout: 60 * time.Second}
	}
	return &Queue{url: cfg.URL, endpoint: endpoint, region: region, creds: cfg.AWS.Credentials, httpc: httpc, signer: v4.NewSigner()}, nil
}

// URL is the queue's URL.
func (q *Queue) URL() string { return q.url }

// Receive receives up to max messages (1 to 10), waiting up to wait (at
// most 20 s, whole seconds) for one to arrive: SQS's ReceiveMessage. The
// messages become invisible for the queue's visibility timeout; a message
// not deleted by then is received again. No message is not an error.
func (q *Queue) Receive(ctx context.Context, max int, wait time.Duration) ([]Message, error) {
	if max < 1 || max > 10 {
		return nil, fmt.Errorf("sqs: ReceiveMessage: max %d: must be 1 to 10", max)
	}
	if wait < 0 || wait > 20*time.Second {
		return nil, fmt.Errorf("sqs: ReceiveMessage: wait %v: must be 0 to 20s", wait)
	}
	var out struct {
		Messages []struct {
			MessageID     string `xml:"MessageId"`
			ReceiptHandle string `xml:"ReceiptHandle"`
			MD5OfBody     string `xml:"MD5OfBody"`
			Body          string `xml:"Body"`
		} `xml:"ReceiveMessageResult>Message"`
	}
	err := q.call(ctx, "ReceiveMessage", url.Values{
		"MaxNumberOfMessages": {strconv.Itoa(max)},
		"WaitTimeSeconds":     {strconv.Itoa(int(wait / time.Second))},
	}, &out)
	if err != nil {
		return nil, err
	}
	msgs := make([]Message, 0, len(out.Messages))
	for _, m := range out.Messages {
		if m.MD5OfBody != "" {
			sum := md5.Sum([]byte(m.Body)) //nolint:gosec // SQS's checksum
			if hex.EncodeToString(sum[:]) != strings.ToLower(m.MD5OfBody) {
				return nil, fmt.Errorf("sqs: ReceiveMessage: message %s: its body does not match its MD5OfBody", m.MessageID)
			}
		}
		if m.ReceiptHandle == "" {
			return nil, fmt.Errorf("sqs: ReceiveMessage: message %s has no receipt handle", m.MessageID)
		}
		msgs = append(msgs, Message{ID: m.MessageID, ReceiptHandle: m.ReceiptHandle, Body: m.Body})
	}
	return msgs, nil
}

// Delete deletes a received message by its receipt handle: SQS's
// DeleteMessage.
func (q *Queue) Delete(ctx context.Context, receiptHandle string) error {
	return q.call(ctx, "DeleteMessage", url.Values{"ReceiptHandle": {receiptHandle}}, nil)
}

// Send sends a message with body and returns its ID: SQS's SendMessage.
func (q *Queue) Send(ctx context.Context, body string) (string, error) {
	var out struct {
		MessageID string `xml:"SendMessageResult>MessageId"`
	}
	if err := q.call(ctx, "SendMessage", url.Values{"MessageBody": {body}}, &out); err != nil {
		return "", err
	}
	return out.MessageID, nil
}

// Attributes returns the queue's attributes of those names (such as
// ApproximateNumberOfMessages; none: all): SQS's GetQueueAttributes.
func (q *Queue) Attributes(ctx context.Context, names ...string) (map[string]string, error) {
	params := url.Values{}
	for i, n := range names {
		params.Set("AttributeName."+strconv.Itoa(i+1), n)
	}
	var out struct {
		Attributes []struct {
			Name  string `xml:"Name"`
			Value string `xml:"Value"`
		} `xml:"GetQueueAttributesResult>Attribute"`
	}
	if err := q.call(ctx, "GetQueueAttributes", params, &out); err != nil {
		return nil, err
	}
	attrs := make(map[string]string, len(out.Attributes))
	for _, a := range out.Attributes {
		attrs[a.Name] = a.Value
	}
	return attrs, nil
}

// call POSTs action with params to the queue and decodes the XML answer
// into out (nil: ignored).
func (q *Queue) call(ctx context.Context, action string, params url.Values, out any) error {
	params.Set("Action", action)
	params.Set("Version", apiVersion)
	params.Set("QueueUrl", q.url)
	body := params.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, q.endpoint+"/", strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("sqs: %s: %w", action, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	creds, err := q.creds.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("sqs: %s: AWS credentials: %w", action, err)
	}
	sum := sha256.Sum256([]byte(body))
	if err := q.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "sqs", q.region, time.Now()); err != nil {
		return fmt.Errorf("sqs: %s: signing: %w", action, err)
	}
	resp, err := q.httpc.Do(req)
	if err != nil {
		return fmt.Errorf("sqs: %s: %w", action, err)
	}
	defer resp.Body.Close() //nolint:errcheck // read to the end below
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("sqs: %s: reading the answer: %w", action, err)
	}
	if len(data) > maxResponse {
		return fmt.Errorf("sqs: %s: answer larger than %d bytes", action, maxResponse)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Code    string `xml:"Error>Code"`
			Message string `xml:"Error>Message"`
		}
		if xml.Unmarshal(data, &e) != nil || e.Code == "" {
			e.Code, e.Message = http.StatusText(resp.StatusCode), strings.TrimSpace(string(firstBytes(data, 200)))
		}
		return &Error{Action: action, StatusCode: resp.StatusCode, Code: e.Code, Message: e.Message}
	}
	if out == nil {
		return nil
	}
	if err := xml.NewDecoder(bytes.NewReader(data)).Decode(out); err != nil {
		return fmt.Errorf("sqs: %s: decoding the answer: %w", action, err)
	}
	return nil
}

func firstBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
