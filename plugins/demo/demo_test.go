package demo_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/plugins/demo"
)

// recorder is a Reporter that keeps every update.
type recorder struct {
	mu      sync.Mutex
	updates []streamer.Update
	// onReport, when set, is called after each update is kept.
	onReport func(n int)
}

func (r *recorder) Report(_ context.Context, u streamer.Update) error {
	r.mu.Lock()
	r.updates = append(r.updates, u)
	n := len(r.updates)
	r.mu.Unlock()
	if r.onReport != nil {
		r.onReport(n)
	}
	return nil
}

func (r *recorder) all() []streamer.Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]streamer.Update(nil), r.updates...)
}

type testBundle struct {
	actions map[string]streamer.Action
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	p := demo.New()
	b := &testBundle{actions: make(map[string]streamer.Action)}
	for _, a := range p.Actions {
		b.actions[a.Name] = a
	}
	return b
}

func (b *testBundle) action(t *testing.T, name string) streamer.Action {
	t.Helper()
	a, ok := b.actions[name]
	require.True(t, ok, "action %s is missing", name)
	return a
}

// serve runs the action with payload as a request would, validation first.
func (b *testBundle) serve(ctx context.Context, t *testing.T, name, payload string, rep streamer.Reporter) (any, error) {
	t.Helper()
	a := b.action(t, name)
	req := &streamer.Request{ID: "r-1", Action: name, Stage: streamer.StageProcess, Attempt: 1}
	if payload != "" {
		req.Payload = json.RawMessage(payload)
	}
	ctx = streamer.WithRequest(ctx, req)
	if v, ok := a.Handler.(streamer.Validator); ok {
		if err := v.Validate(ctx, req); err != nil {
			return nil, err
		}
	}
	return a.Handler.Serve(ctx, req, rep)
}

// marshal returns the JSON text of a handler result, as the framework sends it.
func marshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// requireValidation asserts err is VALIDATION_ERROR with a detail naming field
// and rule.
func requireValidation(t *testing.T, err error, field, rule string) {
	t.Helper()
	require.Error(t, err)
	var se *streamer.Error
	require.True(t, errors.As(err, &se), "error %v is not a *streamer.Error", err)
	require.Equal(t, streamer.CodeValidation, se.Code)
	details, ok := se.Details.([]streamer.FieldError)
	require.True(t, ok, "details %#v are not []FieldError", se.Details)
	for _, d := range details {
		if d.Field == field {
			assert.Equal(t, rule, d.Rule)
			assert.NotEmpty(t, d.Message)
			return
		}
	}
	t.Fatalf("no detail for field %q in %+v", field, details)
}

func TestNew(t *testing.T) {
	t.Parallel()
	p := demo.New()
	assert.Equal(t, "demo", p.Name)
	modes := map[string]streamer.Mode{}
	for _, a := range p.Actions {
		require.NotNil(t, a.Handler, a.Name)
		modes[a.Name] = a.Options.Mode
	}
	assert.Equal(t, map[string]streamer.Mode{
		"echo":         streamer.ModeSync,
		"delay":        streamer.ModeAsync,
		"fail":         streamer.ModeAsync,
		"blob":         streamer.ModeAsync,
		"checkpointed": streamer.ModeAsync,
	}, modes)
	b := setup(t)
	assert.GreaterOrEqual(t, b.action(t, "delay").Options.Timeout, 10*time.Minute+time.Second)
	assert.Equal(t, demo.MaxSucceedOn, b.action(t, "fail").Options.Retry.MaxAttempts, "retried only when succeed_on asks")
}

func TestEcho(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, payload := range []string{`{"a":[1,2,{"b":null}]}`, `"text"`, `42`, `[]`, `null`} {
		got, err := b.serve(t.Context(), t, "echo", payload, streamer.Discard)
		require.NoError(t, err)
		assert.Equal(t, payload, marshal(t, got))
	}
	got, err := b.serve(t.Context(), t, "echo", "", streamer.Discard)
	require.NoError(t, err)
	assert.Equal(t, "null", marshal(t, got))
}

func TestDelay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := &recorder{}
	start := time.Now()
	got, err := b.serve(t.Context(), t, "delay", `{"ms":100,"steps":4}`, rec)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
	assert.JSONEq(t, `{"steps":4,"ms":100}`, marshal(t, got))
	assert.Equal(t, []streamer.Update{
		{Percentage: 25, Message: "step 1/4"},
		{Percentage: 50, Message: "step 2/4"},
		{Percentage: 75, Message: "step 3/4"},
		{Percentage: 100, Message: "step 4/4"},
	}, rec.all())
}

func TestDelayZeroMs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := &recorder{}
	got, err := b.serve(t.Context(), t, "delay", `{"ms":0,"steps":3}`, rec)
	require.NoError(t, err)
	assert.JSONEq(t, `{"steps":3,"ms":0}`, marshal(t, got))
	ups := rec.all()
	require.Len(t, ups, 3)
	assert.InDelta(t, 100.0/3, ups[0].Percentage, 1e-9)
	assert.Equal(t, "step 3/3", ups[2].Message)
	assert.InDelta(t, 100.0, ups[2].Percentage, 1e-9)
}

func TestDelayCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	done := make(chan error, 1)

	// Cancel as soon as the first of 600 steps is reported.
	ctx2, cancel2 := context.WithCancel(t.Context())
	defer cancel2()
	rec2 := &recorder{onReport: func(int) { cancel2() }}
	start := time.Now()
	go func() {
		_, err := b.serve(ctx2, t, "delay", `{"ms":600,"steps":600}`, rec2)
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
		assert.Len(t, rec2.all(), 1)
		assert.Less(t, time.Since(start), 500*time.Millisecond)
	case <-time.After(5 * time.Second):
		t.Fatal("delay did not honour cancel")
	}

	// A long wait is cut short too.
	ctx3, cancel3 := context.WithCancel(t.Context())
	go func() {
		_, err := b.serve(ctx3, t, "delay", `{"ms":600000,"steps":2}`, streamer.Discard)
		done <- err
	}()
	cancel3()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("delay did not honour cancel during a long step")
	}
}

func TestDelayDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := b.serve(ctx, t, "delay", `{"ms":600000,"steps":1}`, streamer.Discard)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestDelayValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name, payload, field, rule string
	}{
		{"missing steps", `{"ms":10}`, "steps", "required"},
		{"missing ms", `{"steps":1}`, "ms", "required"},
		{"steps 0", `{"ms":10,"steps":0}`, "steps", "gte"},
		{"steps too many", `{"ms":10,"steps":1001}`, "steps", "lte"},
		{"ms negative", `{"ms":-1,"steps":1}`, "ms", "gte"},
		{"ms too long", `{"ms":600001,"steps":1}`, "ms", "lte"},
		{"ms not a number", `{"ms":"10","steps":1}`, "ms", "type"},
		{"ms fractional", `{"ms":1.5,"steps":1}`, "ms", "type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			_, err := b.serve(t.Context(), t, "delay", tc.payload, rec)
			requireValidation(t, err, tc.field, tc.rule)
			assert.Empty(t, rec.all())
		})
	}
	for _, payload := range []string{"", `null`, `[]`, `"x"`, `{`} {
		_, err := b.serve(t.Context(), t, "delay", payload, streamer.Discard)
		require.Error(t, err, "payload %q", payload)
		assert.Equal(t, streamer.CodeValidation, streamer.CodeOf(err), "payload %q", payload)
	}
}

func TestFail(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := &recorder{}
	_, err := b.serve(t.Context(), t, "fail", `{"code":"OUT_OF_CHEESE","message":"no more cheese"}`, rec)
	require.Error(t, err)
	var se *streamer.Error
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "OUT_OF_CHEESE", se.Code)
	assert.Equal(t, "no more cheese", se.Message)
	assert.False(t, se.Retryable)
	ups := rec.all()
	require.Len(t, ups, 1)
	assert.InDelta(t, 50.0, ups[0].Percentage, 1e-9)
	assert.NotEmpty(t, ups[0].Message)

	body := streamer.Body(err, streamer.CodeProcessingFailed)
	assert.Equal(t, "OUT_OF_CHEESE", body.Code)

	_, err = b.serve(t.Context(), t, "fail", `{"code":"E1"}`, streamer.Discard)
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "E1", se.Code)
	assert.NotEmpty(t, se.Message)
}

func TestFailValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name, payload, rule string
	}{
		{"missing code", `{"message":"m"}`, "required"},
		{"lower case", `{"code":"oops","message":"m"}`, "upper_snake"},
		{"leading digit", `{"code":"1BAD","message":"m"}`, "upper_snake"},
		{"dash", `{"code":"BAD-CODE","message":"m"}`, "upper_snake"},
		{"space", `{"code":"BAD CODE","message":"m"}`, "upper_snake"},
		{"too long", `{"code":"` + strings.Repeat("A", 65) + `","message":"m"}`, "upper_snake"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			_, err := b.serve(t.Context(), t, "fail", tc.payload, rec)
			requireValidation(t, err, "code", tc.rule)
			assert.Empty(t, rec.all())
		})
	}
}

func TestBlob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, n := range []int{1, 2, 3, 1000, 131073, demo.MaxBlobBytes} {
		got, err := b.serve(t.Context(), t, "blob", marshal(t, map[string]int{"bytes": n}), streamer.Discard)
		require.NoError(t, err)
		raw, ok := got.(json.RawMessage)
		require.True(t, ok, "result is %T", got)
		var s string
		require.NoError(t, json.Unmarshal(raw, &s))
		require.Len(t, s, n)
		require.Equal(t, n, strings.Count(s, "x"))
	}
}

func TestBlobValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name, payload, rule string
	}{
		{"missing", `{}`, "required"},
		{"zero", `{"bytes":0}`, "required"},
		{"negative", `{"bytes":-5}`, "gte"},
		{"too large", `{"bytes":10485761}`, "lte"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := b.serve(t.Context(), t, "blob", tc.payload, streamer.Discard)
			requireValidation(t, err, "bytes", tc.rule)
		})
	}
}
