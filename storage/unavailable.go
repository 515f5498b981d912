package storage

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"net/url"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsUnavailable reports whether err means the database server could not be
// reached or went away (a write's ErrUnavailable, or a read on the pool
// whose connection was cut or could not be made): the request did nothing
// and may be retried, so HTTP answers 503 rather than 500.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 57P01-57P03: the server is
		// shutting down, crashed or is starting up.
		return len(pgErr.Code) == 5 && (pgErr.Code[:2] == "08" || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03")
	}
	// A network error of the driver's connection (cut mid-query); those of
	// HTTP requests to other servers (federation, push) come wrapped in a
	// *url.Error and are not the database's.
	var opErr *net.OpError
	var urlErr *url.Error
	return errors.As(err, &opErr) && !errors.As(err, &urlErr)
}
