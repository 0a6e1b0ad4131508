package middleware

import (
	"context"
	"encoding/json"

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
	_, err := streamer.DecodePayload[T](payload)
	return err
}
