package middleware_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
)

type reportRequest struct {
	Start  string `json:"start" validate:"required"`
	End    string `json:"end" validate:"required"`
	Format string `json:"format" validate:"omitempty,oneof=pdf csv"`
	Pages  int    `json:"pages" validate:"gte=1,lte=100"`
}

// Validate checks what struct tags cannot.
func (r *reportRequest) Validate() error {
	if r.Start > r.End {
		return errors.New("start must not be after end")
	}
	return nil
}

type coded struct {
	N int `json:"n"`
}

func (c coded) Validate() error {
	if c.N == 13 {
		return streamer.NewError("UNLUCKY", "13 is refused")
	}
	return nil
}

func serveValidate[T any](t *testing.T, payload string, stage streamer.Stage) (bool, error) {
	t.Helper()
	called := false
	h := middleware.Validate[T]()(streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
		called = true
		return nil, nil
	}))
	var raw json.RawMessage
	if payload != "" {
		raw = json.RawMessage(payload)
	}
	_, err := h.Serve(context.Background(), &streamer.Request{ID: "r", Action: "report", Payload: raw, Stage: stage}, streamer.Discard)
	return called, err
}

func details(t *testing.T, err error) []streamer.FieldError {
	t.Helper()
	var se *streamer.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, streamer.CodeValidation, se.Code)
	if se.Details == nil {
		return nil
	}
	fe, ok := se.Details.([]streamer.FieldError)
	require.True(t, ok, "details are %T", se.Details)
	return fe
}

func TestValidateDetails(t *testing.T) {
	t.Parallel()
	called, err := serveValidate[reportRequest](t, `{"end":"2024-02-01","format":"doc","pages":0}`, streamer.StageSync)
	assert.False(t, called)
	fe := details(t, err)
	byField := map[string]string{}
	for _, f := range fe {
		byField[f.Field] = f.Rule
		assert.NotEmpty(t, f.Message)
	}
	assert.Equal(t, map[string]string{"start": "required", "format": "oneof", "pages": "gte"}, byField)
}

func TestValidatePasses(t *testing.T) {
	t.Parallel()
	for _, stage := range []streamer.Stage{streamer.StageSync, streamer.StageAdmit} {
		called, err := serveValidate[reportRequest](t, `{"start":"2024-01-01","end":"2024-02-01","pages":3}`, stage)
		require.NoError(t, err)
		assert.True(t, called)
	}
}

func TestValidateSelfValidator(t *testing.T) {
	t.Parallel()
	called, err := serveValidate[reportRequest](t, `{"start":"2024-03-01","end":"2024-02-01","pages":3}`, streamer.StageAdmit)
	assert.False(t, called)
	var se *streamer.Error
	require.ErrorAs(t, err, &se)
	assert.Equal(t, streamer.CodeValidation, se.Code)
	assert.Equal(t, "start must not be after end", se.Message)

	// A value-receiver SelfValidator returning *streamer.Error keeps its code.
	_, err = serveValidate[coded](t, `{"n":13}`, streamer.StageSync)
	assert.Equal(t, "UNLUCKY", streamer.CodeOf(err))
	_, err = serveValidate[coded](t, `{"n":12}`, streamer.StageSync)
	require.NoError(t, err)
}

func TestValidateDecodeErrors(t *testing.T) {
	t.Parallel()
	_, err := serveValidate[reportRequest](t, `{"start":"a","end":"b","pages":"many"}`, streamer.StageSync)
	fe := details(t, err)
	require.Len(t, fe, 1)
	assert.Equal(t, streamer.FieldError{Field: "pages", Rule: "type", Message: "pages must be a JSON integer"}, fe[0])

	_, err = serveValidate[reportRequest](t, `[1,2]`, streamer.StageSync)
	assert.Nil(t, details(t, err))

	_, err = serveValidate[reportRequest](t, `{"start":`, streamer.StageSync)
	assert.Nil(t, details(t, err))

	// An absent payload decodes as null: the required fields are missing.
	_, err = serveValidate[reportRequest](t, "", streamer.StageSync)
	assert.Len(t, details(t, err), 3)
}

func TestValidateSkipsAtProcess(t *testing.T) {
	t.Parallel()
	called, err := serveValidate[reportRequest](t, `{}`, streamer.StageProcess)
	require.NoError(t, err)
	assert.True(t, called)
}
