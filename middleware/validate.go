package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"

	"github.com/streamer-go/streamer"
)

// Validate checks every request's payload against T before the rest of the
// chain runs, for plain handlers ([streamer.Typed] handlers validate
// themselves). The payload is decoded into T with encoding/json (an absent
// payload decodes as null), then checked with [streamer.ValidateStruct] and,
// when T or *T implements it, [streamer.SelfValidator]. A failure returns
// VALIDATION_ERROR whose details list each field as [streamer.FieldError].
//
// It validates at [streamer.StageSync] and [streamer.StageAdmit], so a bad
// async request is refused before it is stored. At [streamer.StageProcess]
// it passes the request through: the payload was validated at admission
// and is stored unchanged, and failing a request the client was told is
// queued would only turn a refusal into a late failure.
func Validate[T any]() streamer.Middleware {
	return func(next streamer.Handler) streamer.Handler {
		return streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			if req.Stage != streamer.StageProcess {
				if err := validatePayload[T](req.Payload); err != nil {
					return nil, err
				}
			}
			return next.Serve(ctx, req, rep)
		})
	}
}

func validatePayload[T any](payload json.RawMessage) error {
	var v T
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	if err := json.Unmarshal(payload, &v); err != nil {
		return decodeError(err, reflect.TypeFor[T]())
	}
	if err := streamer.ValidateStruct(v); err != nil {
		return err
	}
	var sv streamer.SelfValidator
	if s, ok := any(&v).(streamer.SelfValidator); ok {
		sv = s
	} else if s, ok := any(v).(streamer.SelfValidator); ok {
		sv = s
	}
	if sv == nil {
		return nil
	}
	if err := sv.Validate(); err != nil {
		var se *streamer.Error
		if errors.As(err, &se) {
			return se
		}
		return streamer.NewError(streamer.CodeValidation, err.Error())
	}
	return nil
}

// decodeError turns a JSON decoding failure into VALIDATION_ERROR, naming
// the field when encoding/json does.
func decodeError(err error, want reflect.Type) *streamer.Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return streamer.NewError(streamer.CodeValidation, "payload must be a JSON "+jsonKind(want))
		}
		return streamer.NewError(streamer.CodeValidation, "payload failed validation").WithDetails([]streamer.FieldError{{
			Field: te.Field, Rule: "type", Message: te.Field + " must be a JSON " + jsonKind(te.Type),
		}})
	}
	return streamer.NewError(streamer.CodeValidation, "payload is not valid JSON for this action")
}

func jsonKind(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "value"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Interface:
		return "value"
	default:
		return "object"
	}
}
