package streamer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/streamer-go/streamer/storage"
)

// processRecovered is [App.Process] for the embedded worker: a panic outside
// the handler (which serve already recovers), such as a store that panicked
// on a damaged page, is logged with its stack and returned as an error, so
// the worker tries the request again later as after a store failure, and
// the process lives on. The reaper ends a request that keeps failing so.
func (a *App) processRecovered(ctx context.Context, k storage.Key) (err error) {
	defer func() {
		if p := recover(); p != nil {
			a.log.Error().Str("request_id", k.ID).Str("panic", fmt.Sprint(p)).
				Bytes("stack", debug.Stack()).Msg("processing panicked")
			err = fmt.Errorf("streamer: processing %s panicked: %v", k.ID, p)
		}
	}()
	return a.Process(ctx, k)
}

// recoverMessage, deferred by [App.HandleMessage], turns a panic outside a
// handler (which serve already recovers), such as a store that panicked on
// a damaged page, into an INTERNAL_ERROR reply carrying the frame's
// request_id when it had a valid one, with the stack logged and not sent.
// The connection stays open.
func (a *App) recoverMessage(ctx context.Context, conn Conn, data []byte) {
	p := recover()
	if p == nil {
		return
	}
	f, _ := DecodeFrame(data)
	a.log.Error().Str("connection_id", conn.ID).Str("action", f.Action).Str("request_id", f.ID).
		Str("panic", fmt.Sprint(p)).Bytes("stack", debug.Stack()).Msg("message panicked")
	a.replyError(ctx, conn, f.ID, NewError(CodeInternal, "internal error"))
}

// badAfterSeq reports whether err, from decoding a refPayload, is about
// after_seq alone (a fraction, a string, or a number past int64): the reply
// then names that field, not request_id.
func badAfterSeq(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te) && te.Field == "after_seq"
}
