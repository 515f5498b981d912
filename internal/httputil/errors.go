// Package httputil holds the HTTP plumbing shared by the client, media and
// federation APIs: the server's route table (Router), Matrix error
// responses, JSON bodies, CORS, request IDs, access logs and client
// addresses behind trusted proxies.
package httputil

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Error is a Matrix error response: an HTTP status, an errcode and extra
// top-level fields (e.g. soft_logout, or the flows of a UIA 401).
type Error struct {
	Status int
	Code   string
	Msg    string
	Extra  map[string]any
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Msg) }

// MarshalJSON renders {"errcode":..., "error":..., extra...}; a UIA response
// without a failed stage has no errcode.
func (e *Error) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(e.Extra)+2)
	for k, v := range e.Extra {
		m[k] = v
	}
	if e.Code != "" {
		m["errcode"] = e.Code
		m["error"] = e.Msg
	}
	return json.Marshal(m)
}

// With returns a copy of e with an extra field set.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Extra = make(map[string]any, len(e.Extra)+1)
	for k, v := range e.Extra {
		c.Extra[k] = v
	}
	c.Extra[key] = value
	return &c
}

func newErr(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Constructors for the errors the spec names, with their HTTP statuses.

func Forbidden(format string, args ...any) *Error {
	return newErr(http.StatusForbidden, "M_FORBIDDEN", format, args...)
}
func NotFound(format string, args ...any) *Error {
	return newErr(http.StatusNotFound, "M_NOT_FOUND", format, args...)
}
func Unrecognized(format string, args ...any) *Error {
	return newErr(http.StatusNotFound, "M_UNRECOGNIZED", format, args...)
}
func MethodNotAllowed(format string, args ...any) *Error {
	return newErr(http.StatusMethodNotAllowed, "M_UNRECOGNIZED", format, args...)
}
func BadJSON(format string, args ...any) *Error {
	return newErr(http.StatusBadRequest, "M_BAD_JSON", format, args...)
}
func NotJSON(format string, args ...any) *Error {
	return newErr(http.StatusBadRequest, "M_NOT_JSON", format, args...)
}
func MissingParam(format string, args ...any) *Error {
	return newErr(http.StatusBadRequest, "M_MISSING_PARAM", format, args...)
}
func InvalidParam(format string, args ...any) *Error {
	return newErr(http.StatusBadRequest, "M_INVALID_PARAM", format, args...)
}
func MissingToken(format string, args ...any) *Error {
	return newErr(http.StatusUnauthorized, "M_MISSING_TOKEN", format, args...)
}

// UnknownToken is the 401 for a bad or expired token; softLogout tells the
// client it may refresh or log in again without losing its data.
func UnknownToken(softLogout bool, format string, args ...any) *Error {
	return newErr(http.StatusUnauthorized, "M_UNKNOWN_TOKEN", format, args...).With("soft_logout", softLogout)
}
func UserInUse(format string, args ...any) *Error {
	return newErr(http.StatusBadRequest, "M_USER_IN_USE", format, args...)
}
func InvalidUsername(format string, args ...any) *Error {
	return newErr(http.StatusBadRequest, "M_INVALID_USERNAME", format, args...)
}
func WeakPassword(format string, args ...any) *Error {
	return newErr(http.StatusBadRequest, "M_WEAK_PASSWORD", format, args...)
}
func TooLarge(format string, args ...any) *Error {
	return newErr(http.StatusRequestEntityTooLarge, "M_TOO_LARGE", format, args...)
}

// UnknownPos: a sliding-sync position the server no longer knows (MSC4186).
func UnknownPos(format string, args ...any) *Error {
	return newErr(http.StatusBadRequest, "M_UNKNOWN_POS", format, args...)
}

func Unknown(format string, args ...any) *Error {
	return newErr(http.StatusBadRequest, "M_UNKNOWN", format, args...)
}
func Exclusive(format string, args ...any) *Error {
	return newErr(http.StatusBadRequest, "M_EXCLUSIVE", format, args...)
}
func UserDeactivated(format string, args ...any) *Error {
	return newErr(http.StatusForbidden, "M_USER_DEACTIVATED", format, args...)
}
func LimitExceeded(retryAfterMS int64, format string, args ...any) *Error {
	return newErr(http.StatusTooManyRequests, "M_LIMIT_EXCEEDED", format, args...).With("retry_after_ms", retryAfterMS)
}

// Unavailable is the 503 answered while the database cannot be reached:
// the request did nothing, and may be retried.
func Unavailable() *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "M_UNKNOWN", Msg: "The database is unavailable; try again shortly"}
}

// Internal is the 500 answered for unexpected failures; the cause is logged,
// never sent to the client.
func Internal() *Error {
	return &Error{Status: http.StatusInternalServerError, Code: "M_UNKNOWN", Msg: "Internal server error"}
}
