package storage

import "strings"

// The SQL that only SQLite speaks lives behind these helpers, so a second
// engine is a contained change.

// isUniqueViolation reports whether err is a unique-constraint failure on
// the named table.column.
func isUniqueViolation(err error, column string) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed: "+column)
}
