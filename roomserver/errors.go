package roomserver

import (
	"errors"
	"fmt"
)

// Errors the APIs map to Matrix errors.
var (
	ErrRoomNotFound       = errors.New("room not found")
	ErrEventTooLarge      = errors.New("event is larger than 65536 bytes")
	ErrUnsupportedVersion = errors.New("unsupported room version")
	ErrAliasInUse         = errors.New("room alias already in use")
	ErrStateResolution    = errors.New("state resolution failed")
)

// ForbiddenError is an action the auth rules or the server's policy refuse.
// Code is the Matrix errcode when it is not M_FORBIDDEN.
type ForbiddenError struct {
	Reason string
	Code   string
}

func (e *ForbiddenError) Error() string { return "forbidden: " + e.Reason }

func forbidden(format string, args ...any) error {
	return &ForbiddenError{Reason: fmt.Sprintf(format, args...)}
}

// BadRequestError is malformed input (event content, parameters). Code is
// the Matrix errcode when it is not M_BAD_JSON.
type BadRequestError struct {
	Reason string
	Code   string
}

func (e *BadRequestError) Error() string { return "bad request: " + e.Reason }

func badRequest(format string, args ...any) error {
	return &BadRequestError{Reason: fmt.Sprintf(format, args...)}
}

// invalidParam is a BadRequestError for a malformed parameter.
func invalidParam(format string, args ...any) error {
	return &BadRequestError{Reason: fmt.Sprintf(format, args...), Code: "M_INVALID_PARAM"}
}
