package streamer

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"

	"github.com/go-playground/validator/v10"
)

// SelfValidator is implemented by payload types with checks that struct tags
// cannot express (such as "start before end"). [Typed] calls Validate after
// the tags pass; an [*Error] is sent as is, any other error becomes
// VALIDATION_ERROR with its text as the message.
type SelfValidator interface {
	Validate() error
}

// Typed adapts a typed function to a [Handler]. The payload is decoded into
// In with encoding/json and validated with the go-playground/validator
// struct tags of In (and [SelfValidator], if In implements it). A payload
// that fails either check is refused with VALIDATION_ERROR, whose details
// list each field as {field, rule, message}, before anything is stored or
// run. The request itself is available with [RequestFromContext].
func Typed[In, Out any](fn func(ctx context.Context, in In, rep Reporter) (Out, error)) Handler {
	return &typed[In, Out]{fn: fn}
}

type typed[In, Out any] struct {
	fn func(ctx context.Context, in In, rep Reporter) (Out, error)
}

func (t *typed[In, Out]) decode(req *Request) (In, error) { return DecodePayload[In](req.Payload) }

// DecodePayload decodes a payload into T with encoding/json (an absent
// payload decodes as null) and checks it with [ValidateStruct] and, when T
// or *T implements it, [SelfValidator]. Failures are VALIDATION_ERROR
// errors whose details name each field, as [Typed] and the validation
// middleware send them.
func DecodePayload[T any](payload json.RawMessage) (T, error) {
	var in T
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	if err := json.Unmarshal(payload, &in); err != nil {
		return in, decodeError(err)
	}
	if err := ValidateStruct(in); err != nil {
		return in, err
	}
	sv, ok := any(&in).(SelfValidator)
	if !ok {
		sv, ok = any(in).(SelfValidator)
	}
	if !ok {
		return in, nil
	}
	if err := sv.Validate(); err != nil {
		var se *Error
		if errors.As(err, &se) {
			return in, se
		}
		return in, &Error{Code: CodeValidation, Message: err.Error()}
	}
	return in, nil
}

// Validate implements [Validator].
func (t *typed[In, Out]) Validate(_ context.Context, req *Request) error {
	_, err := t.decode(req)
	return err
}

// Serve implements [Handler].
func (t *typed[In, Out]) Serve(ctx context.Context, req *Request, rep Reporter) (any, error) {
	in, err := t.decode(req)
	if err != nil {
		return nil, err
	}
	out, err := t.fn(ctx, in, rep)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func decodeError(err error) *Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			return &Error{Code: CodeValidation, Message: "payload must be a JSON " + jsonKind(te.Type)}
		}
		return (&Error{Code: CodeValidation, Message: "payload failed validation"}).WithDetails([]FieldError{{
			Field: field, Rule: "type", Message: field + " must be a JSON " + jsonKind(te.Type),
		}})
	}
	return &Error{Code: CodeValidation, Message: "payload is not valid JSON for this action"}
}

func jsonKind(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "value"
	}
	switch t.Kind() {
	case reflect.Interface:
		return "value"
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
	default:
		return "object"
	}
}

var (
	validateOnce sync.Once
	validate     *validator.Validate
)

func structValidator() *validator.Validate {
	validateOnce.Do(func() {
		validate = validator.New(validator.WithRequiredStructEnabled())
		validate.RegisterTagNameFunc(func(f reflect.StructField) string {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch name {
			case "-":
				return ""
			case "":
				return f.Name
			}
			return name
		})
	})
	return validate
}

// ValidateStruct checks v's go-playground/validator struct tags. It returns
// nil, or VALIDATION_ERROR with a [FieldError] per failed field, named by
// its JSON name (dotted for nested fields). Non-struct values pass.
func ValidateStruct(v any) error {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil
		}
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return nil
	}
	err := structValidator().Struct(v)
	if err == nil {
		return nil
	}
	var ves validator.ValidationErrors
	if !errors.As(err, &ves) {
		return &Error{Code: CodeValidation, Message: "payload failed validation"}
	}
	details := make([]FieldError, 0, len(ves))
	for _, fe := range ves {
		field := fe.Namespace()
		if _, rest, ok := strings.Cut(field, "."); ok {
			field = rest // drop the top-level type name
		}
		details = append(details, FieldError{Field: field, Rule: fe.Tag(), Message: fieldMessage(field, fe)})
	}
	return (&Error{Code: CodeValidation, Message: "payload failed validation"}).WithDetails(details)
}

func fieldMessage(field string, fe validator.FieldError) string {
	switch fe.Tag() {
	case "required":
		return field + " is required"
	case "min", "gte":
		return field + " must be at least " + fe.Param()
	case "max", "lte":
		return field + " must be at most " + fe.Param()
	case "gt":
		return field + " must be greater than " + fe.Param()
	case "lt":
		return field + " must be less than " + fe.Param()
	case "oneof":
		return field + " must be one of " + fe.Param()
	case "len":
		return field + " must have length " + fe.Param()
	case "datetime":
		return field + " must be a date in the layout " + fe.Param()
	default:
		if fe.Param() != "" {
			return field + " failed " + fe.Tag() + "=" + fe.Param()
		}
		return field + " failed " + fe.Tag()
	}
}

type requestKey struct{}

// WithRequest returns a context carrying req; the router and processor call
// it before running the chain.
func WithRequest(ctx context.Context, req *Request) context.Context {
	return context.WithValue(ctx, requestKey{}, req)
}

// RequestFromContext returns the request a handler chain is running for.
func RequestFromContext(ctx context.Context) (*Request, bool) {
	r, ok := ctx.Value(requestKey{}).(*Request)
	return r, ok
}
