package accounts

import (
	"errors"
	"fmt"
)

// The kinds of refusal the service gives. Every refusal is an *Error that
// wraps one of them, so callers test for a kind with errors.Is; the HTTP
// edge (internal/auth.MatrixError) turns them into Matrix errors.
var (
	// ErrInvalidUsername: a user name that breaks the grammar.
	ErrInvalidUsername = errors.New("invalid user name")
	// ErrNotLocal: a user of another server where a local one is needed.
	ErrNotLocal = errors.New("not a user of this server")
	// ErrWeakPassword: a password that cannot be set.
	ErrWeakPassword = errors.New("password not acceptable")
	// ErrBadLogin: a wrong user name or password; deliberately vague.
	ErrBadLogin = errors.New("invalid username or password")
	// ErrUserInUse: the user ID is already registered.
	ErrUserInUse = errors.New("user ID already taken")
	// ErrRegistrationToken: an unknown, used-up or expired registration token.
	ErrRegistrationToken = errors.New("registration token unusable")
	// ErrInvalidDeviceID: a device ID the server cannot store.
	ErrInvalidDeviceID = errors.New("invalid device ID")
	// ErrUnknownToken: an access or OpenID token that names no session
	// (or the session of a deactivated account).
	ErrUnknownToken = errors.New("unknown token")
	// ErrExpiredToken: an access token past its lifetime; the client may
	// refresh it (a soft logout).
	ErrExpiredToken = errors.New("expired token")
	// ErrUnknownRefreshToken: a refresh token that was used up or never
	// issued; the client logs in again without losing its data (a soft
	// logout).
	ErrUnknownRefreshToken = errors.New("unknown refresh token")
)

// Error is a refusal: its kind (one of the Err values) and a message that
// may be shown to the user.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap makes errors.Is(err, ErrX) test the kind.
func (e *Error) Unwrap() error { return e.Kind }

// refuse builds a refusal of the given kind.
func refuse(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}
