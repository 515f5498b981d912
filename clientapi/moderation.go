package clientapi

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
)

// What admins set on an account changes what its writes do (Synapse's
// admin API, the spec's account suspension): a suspended user may read
// but not write (403 M_USER_SUSPENDED); a shadow-banned user's sends are
// answered as if they succeeded, with an event ID that names nothing, and
// their invites are dropped, so nobody hears from them.

func errSuspended() error {
	return &httputil.Error{Status: http.StatusForbidden, Code: "M_USER_SUSPENDED", Msg: "This account is suspended"}
}

// notSuspended refuses h to suspended users.
func notSuspended(h authed) authed {
	return func(r *http.Request, s *accounts.Session) (any, error) {
		if s.Suspended {
			return nil, errSuspended()
		}
		return h(r, s)
	}
}

// shadowSend answers a shadow-banned user's send (a well-formed one) with
// a made-up event ID, and refuses it to suspended users.
func shadowSend(h authed) authed {
	return notSuspended(func(r *http.Request, s *accounts.Session) (any, error) {
		if !s.ShadowBanned {
			return h(r, s)
		}
		if _, err := readContent(r); err != nil {
			return nil, err
		}
		if _, err := roomIDVar(r); err != nil {
			return nil, err
		}
		return map[string]string{"event_id": fakeEventID()}, nil
	})
}

// shadowInvite drops a shadow-banned user's invite, answering as if it was
// sent, and refuses it to suspended users.
func shadowInvite(h authed) authed {
	return notSuspended(func(r *http.Request, s *accounts.Session) (any, error) {
		if !s.ShadowBanned {
			return h(r, s)
		}
		var body membershipBody
		if err := httputil.DecodeJSON(r, &body); err != nil {
			return nil, err
		}
		if body.UserID == "" {
			return nil, httputil.MissingParam("user_id is required")
		}
		return httputil.Empty, nil
	})
}

// fakeEventID looks like the event IDs of current room versions.
func fakeEventID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return "$" + base64.RawURLEncoding.EncodeToString(b)
}

// shadowRedact is shadowSend for redactions; a suspended user may still
// redact their own events.
func (a *API) shadowRedact(h authed) authed {
	return func(r *http.Request, s *accounts.Session) (any, error) {
		if s.Suspended {
			ev, err := a.db.EventByID(r.Context(), pathVar(r, "eventId"))
			if err != nil || ev.Sender != s.UserID {
				return nil, errSuspended()
			}
		}
		if !s.ShadowBanned {
			return h(r, s)
		}
		var body map[string]any
		if err := httputil.DecodeJSON(r, &body); err != nil {
			return nil, err
		}
		return map[string]string{"event_id": fakeEventID()}, nil
	}
}
