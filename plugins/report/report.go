package report

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/blob"
)

// ActionGenerateReport is the name of the plugin's action.
const ActionGenerateReport = "generate_report"

// MaxSpanDays is the most days endDate may be after startDate.
const MaxSpanDays = 366

// DateLayout is the layout of the payload's dates.
const DateLayout = "2006-01-02"

// Defaults of [Config].
const (
	DefaultRowsPerDay = 24
	DefaultStageDelay = 300 * time.Millisecond
	// DefaultPrefix starts the reports' keys.
	DefaultPrefix = "reports/"
	// DefaultTTL is how long a report and its URL last: a request's
	// default retention ([streamer.DefaultRetention]).
	DefaultTTL = streamer.DefaultRetention
)

// ContentType is the content type of the reports.
const ContentType = "text/csv; charset=utf-8"

// maxRowsPerDay allows one row a minute.
const maxRowsPerDay = 24 * 60

// actionTimeout bounds one run of generate_report.
const actionTimeout = 5 * time.Minute

// Config configures the plugin.
type Config struct {
	// Store is the object storage the reports are written to, and whose
	// signed, expiring URLs the results carry; required. The dev server
	// uses blob/localblob, the Lambdas blob/s3blob.
	Store blob.Store
	// Prefix starts the key of every report, followed by its file name.
	// Empty means [DefaultPrefix]; it must end with a slash and be a valid
	// start of a key (blob.CheckKey).
	Prefix string
	// TTL is how long a report is kept and its URL works, from the end of
	// its run; give it the App's Config.Retention so that a report lasts
	// as long as its request. Zero means [DefaultTTL]; at most
	// blob.MaxURLTTL.
	TTL time.Duration
	// RowsPerDay is the number of rows per day, 1 to 1440, spread evenly
	// over the day. Zero means [DefaultRowsPerDay]: one row an hour.
	RowsPerDay int
	// StageDelay is the pause at each of the four stages, so progress can be
	// watched. Zero means [DefaultStageDelay]; a negative value means no
	// pause.
	StageDelay time.Duration
}

// Payload is the payload of generate_report.
type Payload struct {
	// StartDate is the first day of the report, YYYY-MM-DD.
	StartDate string `json:"startDate" validate:"required,datetime=2006-01-02"`
	// EndDate is the last day of the report, YYYY-MM-DD, not before
	// StartDate and at most [MaxSpanDays] days after it.
	EndDate string `json:"endDate" validate:"required,datetime=2006-01-02"`
}

// Validate checks the range of dates; the struct tags have checked each
// date. It implements [streamer.SelfValidator].
func (p *Payload) Validate() error {
	_, _, err := p.dates()
	return err
}

// dates parses the range, reporting a VALIDATION_ERROR naming the field.
func (p *Payload) dates() (start, end time.Time, err error) {
	start, err = time.Parse(DateLayout, p.StartDate)
	if err != nil {
		return start, end, fieldError("startDate", "datetime", "startDate must be a date in the layout YYYY-MM-DD")
	}
	end, err = time.Parse(DateLayout, p.EndDate)
	if err != nil {
		return start, end, fieldError("endDate", "datetime", "endDate must be a date in the layout YYYY-MM-DD")
	}
	if end.Before(start) {
		return start, end, fieldError("endDate", "gtefield", "endDate must not be before startDate")
	}
	if end.Sub(start) > MaxSpanDays*24*time.Hour {
		return start, end, fieldError("endDate", "max_span",
			"endDate must be at most "+strconv.Itoa(MaxSpanDays)+" days after startDate")
	}
	return start, end, nil
}

func fieldError(field, rule, msg string) *streamer.Error {
	return streamer.NewError(streamer.CodeValidation, "payload failed validation").
		WithDetails([]streamer.FieldError{{Field: field, Rule: rule, Message: msg}})
}

// Result is the result of generate_report.
type Result struct {
	// URL downloads the report until ExpiresAt: a signed URL of the
	// Store, refused (403) once expired or changed in any way.
	URL string `json:"url"`
	// ExpiresAt is when the URL stops working and the report may be
	// deleted.
	ExpiresAt time.Time `json:"expiresAt"`
	// Size is the file's size in bytes.
	Size int64 `json:"size"`
	// Rows is the number of data rows, the header excluded.
	Rows int `json:"rows"`
}

// New returns the plugin, named "report", with the asynchronous action
// generate_report. It returns an error when cfg is invalid.
func New(cfg Config) (streamer.Plugin, error) {
	if cfg.Store == nil {
		return streamer.Plugin{}, errors.New("report: config: Store is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(cfg.Prefix, "/") || blob.CheckKey(cfg.Prefix+"x") != nil {
		return streamer.Plugin{}, fmt.Errorf("report: config: Prefix %q: want a key prefix ending with a slash, such as %q", cfg.Prefix, DefaultPrefix)
	}
	switch {
	case cfg.TTL == 0:
		cfg.TTL = DefaultTTL
	case cfg.TTL < time.Second || cfg.TTL > blob.MaxURLTTL:
		return streamer.Plugin{}, fmt.Errorf("report: config: TTL %s is outside 1s..%s", cfg.TTL, blob.MaxURLTTL)
	}
	switch {
	case cfg.RowsPerDay == 0:
		cfg.RowsPerDay = DefaultRowsPerDay
	case cfg.RowsPerDay < 0 || cfg.RowsPerDay > maxRowsPerDay:
		return streamer.Plugin{}, fmt.Errorf("report: config: RowsPerDay %d is outside 1..%d", cfg.RowsPerDay, maxRowsPerDay)
	}
	switch {
	case cfg.StageDelay == 0:
		cfg.StageDelay = DefaultStageDelay
	case cfg.StageDelay < 0:
		cfg.StageDelay = 0
	}
	g := &generator{cfg: cfg}
	return streamer.Plugin{
		Name: "report",
		Actions: []streamer.Action{{
			Name:    ActionGenerateReport,
			Handler: streamer.Typed(g.generate),
			Options: streamer.ActionOptions{Mode: streamer.ModeAsync, Timeout: actionTimeout},
		}},
	}, nil
}

type generator struct {
	cfg Config
}

// generate runs the stages, renders the report in memory and stores it. It
// honours ctx at every stage and between days; a failed or canceled run
// stores nothing.
func (g *generator) generate(ctx context.Context, in Payload, rep streamer.Reporter) (Result, error) {
	start, end, err := in.dates()
	if err != nil {
		return Result{}, err
	}
	if err := g.stage(ctx, rep, 10, "querying data"); err != nil {
		return Result{}, err
	}
	if err := g.stage(ctx, rep, 40, "aggregating"); err != nil {
		return Result{}, err
	}
	if err := g.stage(ctx, rep, 70, "rendering"); err != nil {
		return Result{}, err
	}
	data, rows, err := render(ctx, start, end, g.cfg.RowsPerDay)
	if err != nil {
		return Result{}, err
	}
	if err := g.stage(ctx, rep, 90, "uploading"); err != nil {
		return Result{}, err
	}
	key := g.cfg.Prefix + fileName(ctx)
	expires := time.Now().Add(g.cfg.TTL).Truncate(time.Second)
	err = g.cfg.Store.Put(ctx, key, bytes.NewReader(data), blob.PutOptions{ContentType: ContentType, ExpiresAt: expires})
	if err != nil {
		return Result{}, fmt.Errorf("report: storing %s: %w", key, err)
	}
	u, err := g.cfg.Store.URL(ctx, key, expires)
	if err != nil {
		return Result{}, fmt.Errorf("report: URL of %s: %w", key, err)
	}
	return Result{URL: u, ExpiresAt: expires, Size: int64(len(data)), Rows: rows}, nil
}

// stage reports progress and pauses for StageDelay.
func (g *generator) stage(ctx context.Context, rep streamer.Reporter, pct float64, msg string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("report: %s: %w", msg, err)
	}
	_ = rep.Report(ctx, streamer.Update{Percentage: pct, Message: msg})
	if g.cfg.StageDelay <= 0 {
		return nil
	}
	t := time.NewTimer(g.cfg.StageDelay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("report: %s: %w", msg, ctx.Err())
	case <-t.C:
		return nil
	}
}

// render writes the CSV in memory (at most about 11 MB: MaxSpanDays days
// of 1440 rows) and returns it with its number of data rows.
func render(ctx context.Context, start, end time.Time, rowsPerDay int) ([]byte, int, error) {
	var buf bytes.Buffer
	bw := bufio.NewWriterSize(&buf, 64<<10)
	rows, err := writeCSV(ctx, bw, start, end, rowsPerDay)
	if err != nil {
		return nil, 0, err
	}
	if err := bw.Flush(); err != nil {
		return nil, 0, fmt.Errorf("report: rendering: %w", err)
	}
	return buf.Bytes(), rows, nil
}

// writeCSV writes the header and rowsPerDay rows for each day from start to
// end, both included, checking ctx between days.
func writeCSV(ctx context.Context, w *bufio.Writer, start, end time.Time, rowsPerDay int) (int, error) {
	if _, err := w.WriteString("date,time,value\n"); err != nil {
		return 0, fmt.Errorf("report: rendering: %w", err)
	}
	rows := 0
	line := make([]byte, 0, 64)
	for day := start; !day.After(end); day = day.AddDate(0, 0, 1) {
		if err := ctx.Err(); err != nil {
			return rows, fmt.Errorf("report: rendering: %w", err)
		}
		date := day.Format(DateLayout)
		for i := range rowsPerDay {
			minute := i * maxRowsPerDay / rowsPerDay
			line = line[:0]
			line = append(line, date...)
			line = append(line, ',')
			line = appendClock(line, minute)
			line = append(line, ',')
			line = appendValue(line, Value(date, minute))
			line = append(line, '\n')
			if _, err := w.Write(line); err != nil {
				return rows, fmt.Errorf("report: rendering: %w", err)
			}
			rows++
		}
	}
	return rows, nil
}

// Value is the report's value, in hundredths, for the given date
// (YYYY-MM-DD) and minute of the day: a deterministic number from 0 to
// 9999, written as 0.00 to 99.99.
func Value(date string, minute int) int {
	h := fnv.New32a()
	_, _ = io.WriteString(h, date)
	_, _ = h.Write([]byte{byte(minute >> 8), byte(minute)})
	return int(h.Sum32() % 10000)
}

// appendClock appends minute as HH:MM.
func appendClock(b []byte, minute int) []byte {
	hh, mm := minute/60, minute%60
	return append(b, byte('0'+hh/10), byte('0'+hh%10), ':', byte('0'+mm/10), byte('0'+mm%10))
}

// appendValue appends v hundredths as a decimal with two places.
func appendValue(b []byte, v int) []byte {
	b = strconv.AppendInt(b, int64(v/100), 10)
	return append(b, '.', byte('0'+v%100/10), byte('0'+v%10))
}

// fileName returns a unique name for the report of the request in ctx: the
// request id reduced to [A-Za-z0-9_-], then random hex (request ids are
// only unique per principal, and the suffix keeps URLs unguessable).
func fileName(ctx context.Context) string {
	id := "report"
	if req, ok := streamer.RequestFromContext(ctx); ok && req.ID != "" {
		id = sanitize(req.ID)
	}
	var r [8]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails
	return id + "-" + hex.EncodeToString(r[:]) + ".csv"
}

// sanitize keeps [A-Za-z0-9_-] of s, replacing anything else with '_', and
// caps the length.
func sanitize(s string) string {
	const maxLen = 128
	var b strings.Builder
	for _, c := range []byte(s) {
		if b.Len() == maxLen {
			break
		}
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}
