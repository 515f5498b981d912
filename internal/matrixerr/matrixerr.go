// Package matrixerr is where the domain errors of the server's services
// (accounts, the roomserver, push rules, end-to-end encryption, ephemeral
// data) become Matrix errors: an HTTP status and an errcode. The services
// know nothing of HTTP; every API maps their errors here, at its edge (the
// endpoint adapters of internal/auth do it for every handler they wrap).
package matrixerr

import (
	"errors"
	"net/http"

	"matrixhs/internal/accounts"
	"matrixhs/internal/e2ee"
	"matrixhs/internal/ephemeral"
	"matrixhs/internal/httputil"
	"matrixhs/roomserver"
	"matrixhs/roomserver/pushrules"
)

// From maps a domain error to the Matrix error it stands for. Errors that
// are already Matrix errors, and unexpected ones (answered as 500s), are
// returned as they are; nil stays nil.
func From(err error) error {
	var he *httputil.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &he):
		return he
	}
	if m := fromAccounts(err); m != nil {
		return m
	}
	if m := fromRooms(err); m != nil {
		return m
	}
	if m := fromEphemeral(err); m != nil {
		return m
	}
	if m := fromKeys(err); m != nil {
		return m
	}
	var pe *pushrules.Error
	if errors.As(err, &pe) {
		return &httputil.Error{Status: pe.Status, Code: pe.Code, Msg: pe.Msg}
	}
	return err
}

// fromAccounts maps the refusals of internal/accounts (nil: not one).
func fromAccounts(err error) *httputil.Error {
	var ae *accounts.Error
	if !errors.As(err, &ae) {
		return nil
	}
	switch {
	case errors.Is(err, accounts.ErrInvalidUsername):
		return httputil.InvalidUsername("%s", ae.Msg)
	case errors.Is(err, accounts.ErrNotLocal), errors.Is(err, accounts.ErrBadLogin),
		errors.Is(err, accounts.ErrRegistrationToken):
		return httputil.Forbidden("%s", ae.Msg)
	case errors.Is(err, accounts.ErrWeakPassword):
		return httputil.WeakPassword("%s", ae.Msg)
	case errors.Is(err, accounts.ErrUserInUse):
		return httputil.UserInUse("%s", ae.Msg)
	case errors.Is(err, accounts.ErrInvalidDeviceID):
		return httputil.InvalidParam("%s", ae.Msg)
	case errors.Is(err, accounts.ErrUnknownToken):
		return httputil.UnknownToken(false, "%s", ae.Msg)
	case errors.Is(err, accounts.ErrExpiredToken), errors.Is(err, accounts.ErrUnknownRefreshToken):
		// A soft logout: the client may refresh or log in again and keep its data.
		return httputil.UnknownToken(true, "%s", ae.Msg)
	}
	return nil
}

// fromRooms maps roomserver errors (nil: not one).
func fromRooms(err error) *httputil.Error {
	var fe *roomserver.ForbiddenError
	var be *roomserver.BadRequestError
	switch {
	case errors.As(err, &fe):
		if fe.Code != "" {
			return &httputil.Error{Status: http.StatusForbidden, Code: fe.Code, Msg: fe.Reason}
		}
		return httputil.Forbidden("%s", fe.Reason)
	case errors.As(err, &be):
		if be.Code != "" {
			return &httputil.Error{Status: http.StatusBadRequest, Code: be.Code, Msg: be.Reason}
		}
		return httputil.BadJSON("%s", be.Reason)
	case errors.Is(err, roomserver.ErrRoomNotFound):
		return httputil.NotFound("Unknown room")
	case errors.Is(err, roomserver.ErrEventTooLarge):
		return httputil.TooLarge("event is larger than 65536 bytes")
	case errors.Is(err, roomserver.ErrUnsupportedVersion):
		return &httputil.Error{Status: http.StatusBadRequest, Code: "M_UNSUPPORTED_ROOM_VERSION", Msg: "unsupported room version"}
	case errors.Is(err, roomserver.ErrAliasInUse):
		return &httputil.Error{Status: http.StatusBadRequest, Code: "M_ROOM_IN_USE", Msg: "room alias already taken"}
	}
	return nil
}

// fromEphemeral maps the refusals of internal/ephemeral (nil: not one).
func fromEphemeral(err error) *httputil.Error {
	var ee *ephemeral.Error
	if !errors.As(err, &ee) {
		return nil
	}
	switch {
	case errors.Is(err, ephemeral.ErrNotJoined), errors.Is(err, ephemeral.ErrNoSharedRoom):
		return httputil.Forbidden("%s", ee.Msg)
	case errors.Is(err, ephemeral.ErrUnknownEvent):
		return httputil.NotFound("%s", ee.Msg)
	case errors.Is(err, ephemeral.ErrInvalid):
		return httputil.InvalidParam("%s", ee.Msg)
	}
	return nil
}

// fromKeys maps the refusals of internal/e2ee (nil: not one).
func fromKeys(err error) *httputil.Error {
	var ke *e2ee.Error
	if !errors.As(err, &ke) {
		return nil
	}
	switch {
	case errors.Is(err, e2ee.ErrMalformed):
		return httputil.BadJSON("%s", ke.Msg)
	case errors.Is(err, e2ee.ErrInvalid), errors.Is(err, e2ee.ErrNotLocal):
		return httputil.InvalidParam("%s", ke.Msg)
	case errors.Is(err, e2ee.ErrMissing):
		return httputil.MissingParam("%s", ke.Msg)
	case errors.Is(err, e2ee.ErrBadSignature):
		return &httputil.Error{Status: http.StatusBadRequest, Code: "M_INVALID_SIGNATURE", Msg: ke.Msg}
	case errors.Is(err, e2ee.ErrKeyIDTaken):
		return httputil.Forbidden("%s", ke.Msg)
	case errors.Is(err, e2ee.ErrTooLarge):
		return httputil.TooLarge("%s", ke.Msg)
	case errors.Is(err, e2ee.ErrDeviceGone):
		// The device's access token went with it.
		return httputil.UnknownToken(false, "%s", ke.Msg)
	}
	return nil
}
