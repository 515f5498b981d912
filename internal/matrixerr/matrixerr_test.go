package matrixerr

import (
	"errors"
	"fmt"
	"testing"

	"matrixhs/internal/accounts"
	"matrixhs/internal/e2ee"
	"matrixhs/internal/ephemeral"
	"matrixhs/internal/httputil"
	"matrixhs/roomserver"
)

func TestFromMapsDomainErrors(t *testing.T) {
	refusal := func(kind error, msg string) error { return &accounts.Error{Kind: kind, Msg: msg} }
	for _, tc := range []struct {
		err        error
		status     int
		code       string
		softLogout any
	}{
		{refusal(accounts.ErrInvalidUsername, "bad"), 400, "M_INVALID_USERNAME", nil},
		{refusal(accounts.ErrNotLocal, "remote"), 403, "M_FORBIDDEN", nil},
		{refusal(accounts.ErrBadLogin, "no"), 403, "M_FORBIDDEN", nil},
		{refusal(accounts.ErrRegistrationToken, "no"), 403, "M_FORBIDDEN", nil},
		{refusal(accounts.ErrWeakPassword, "short"), 400, "M_WEAK_PASSWORD", nil},
		{refusal(accounts.ErrUserInUse, "taken"), 400, "M_USER_IN_USE", nil},
		{refusal(accounts.ErrInvalidDeviceID, "long"), 400, "M_INVALID_PARAM", nil},
		{refusal(accounts.ErrUnknownToken, "who"), 401, "M_UNKNOWN_TOKEN", false},
		{refusal(accounts.ErrExpiredToken, "old"), 401, "M_UNKNOWN_TOKEN", true},
		{refusal(accounts.ErrUnknownRefreshToken, "used"), 401, "M_UNKNOWN_TOKEN", true},
		{fmt.Errorf("wrapped: %w", refusal(accounts.ErrUserInUse, "taken")), 400, "M_USER_IN_USE", nil},
		{roomserver.ErrRoomNotFound, 404, "M_NOT_FOUND", nil},
		{&roomserver.ForbiddenError{Reason: "no"}, 403, "M_FORBIDDEN", nil},
		{httputil.NotJSON("x"), 400, "M_NOT_JSON", nil},
		{&ephemeral.Error{Kind: ephemeral.ErrNotJoined, Msg: "no"}, 403, "M_FORBIDDEN", nil},
		{&ephemeral.Error{Kind: ephemeral.ErrNoSharedRoom, Msg: "no"}, 403, "M_FORBIDDEN", nil},
		{&ephemeral.Error{Kind: ephemeral.ErrUnknownEvent, Msg: "no"}, 404, "M_NOT_FOUND", nil},
		{&ephemeral.Error{Kind: ephemeral.ErrInvalid, Msg: "no"}, 400, "M_INVALID_PARAM", nil},
		{&e2ee.Error{Kind: e2ee.ErrMalformed, Msg: "no"}, 400, "M_BAD_JSON", nil},
		{&e2ee.Error{Kind: e2ee.ErrInvalid, Msg: "no"}, 400, "M_INVALID_PARAM", nil},
		{&e2ee.Error{Kind: e2ee.ErrMissing, Msg: "no"}, 400, "M_MISSING_PARAM", nil},
		{&e2ee.Error{Kind: e2ee.ErrBadSignature, Msg: "no"}, 400, "M_INVALID_SIGNATURE", nil},
		{&e2ee.Error{Kind: e2ee.ErrKeyIDTaken, Msg: "no"}, 403, "M_FORBIDDEN", nil},
		{&e2ee.Error{Kind: e2ee.ErrDeviceGone, Msg: "no"}, 401, "M_UNKNOWN_TOKEN", false},
	} {
		var he *httputil.Error
		if !errors.As(From(tc.err), &he) || he.Status != tc.status || he.Code != tc.code || he.Extra["soft_logout"] != tc.softLogout {
			t.Errorf("%v: mapped to %+v, want %d %s soft_logout=%v", tc.err, he, tc.status, tc.code, tc.softLogout)
		}
	}
	if From(nil) != nil {
		t.Error("nil mapped to an error")
	}
	other := errors.New("disk on fire")
	if From(other) != other {
		t.Error("an unexpected error should stay as it is (a 500)")
	}
}
