package streamer

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/streamer-go/streamer/storage"
)

// Store returns the App's Config.Store, for operator tools (package ops)
// that read what the App stores.
func (a *App) Store() storage.Store { return a.cfg.Store }

// Cancel cancels the request k on an operator's behalf, the way a client's
// cancel frame does: the request is marked canceling; a run in this
// process stops at once; a request no processor holds (never claimed, or
// its lease has passed) is finished here with the CANCELED terminal event;
// one held by a processor elsewhere stops when that processor notices,
// which stores the terminal event. Either way the request gets exactly one
// terminal event. It returns the request as it stands after the cancel; a
// request that had already finished is returned unchanged. An unknown or
// expired request fails with an error wrapping storage.ErrNotFound.
func (a *App) Cancel(ctx context.Context, k storage.Key) (storage.Request, error) {
	r, err := a.cfg.Store.CancelRequest(ctx, k, a.now())
	if err != nil {
		return storage.Request{}, fmt.Errorf("streamer: cancel %s: %w", k.ID, err)
	}
	if r.Status.Final() {
		return r, nil
	}
	finished, err := a.settleCancel(ctx, r)
	if err != nil {
		return r, fmt.Errorf("streamer: cancel %s: %w", k.ID, err)
	}
	if finished {
		if fr, err := a.cfg.Store.GetRequest(ctx, k); err == nil {
			return fr, nil
		}
	}
	return r, nil
}

// StoredPrincipal decodes the principal stored with r (Request.Principal),
// the one the request runs as.
func StoredPrincipal(r storage.Request) (Principal, error) {
	var p Principal
	if err := json.Unmarshal(r.Principal, &p); err != nil {
		return Principal{}, fmt.Errorf("streamer: request %s: decoding its principal: %w", r.Key.ID, err)
	}
	return p, nil
}
