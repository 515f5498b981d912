package storage

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestIsUnavailable(t *testing.T) {
	cut := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{ErrNotFound, false},
		{errors.New("syntax error"), false},
		{fmt.Errorf("%w: reconnecting", ErrUnavailable), true},
		{fmt.Errorf("resolving access token: %w", io.ErrUnexpectedEOF), true},
		{fmt.Errorf("querying: %w", cut), true},
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "23505"}, false},
		// A federation request's network error is no database outage.
		{fmt.Errorf("fetching keys: %w", &url.Error{Op: "Get", URL: "https://x", Err: cut}), false},
	} {
		if got := IsUnavailable(tc.err); got != tc.want {
			t.Errorf("IsUnavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
