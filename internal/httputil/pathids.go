package httputil

import (
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"matrixhs/internal/ids"
)

// pathIDChecks are the path variables that hold Matrix identifiers, with
// the grammar each must follow (spec appendix "Identifier Grammar"). Event
// IDs are not among them: an event that cannot exist is simply not found
// (404, as Synapse answers reads), and the endpoints that act on an event
// (redact) check the grammar themselves.
var pathIDChecks = map[string]func(string) error{
	"roomId":        ids.RoomID,
	"userId":        ids.UserID,
	"roomAlias":     ids.RoomAlias,
	"roomIdOrAlias": roomIDOrAlias,
}

func roomIDOrAlias(s string) error {
	if strings.HasPrefix(s, "#") {
		return ids.RoomAlias(s)
	}
	return ids.RoomID(s)
}

// checkPathIDs wraps h so that identifiers in the path are checked against
// their grammar at the edge: a malformed one is 400 M_INVALID_PARAM (as
// Synapse answers) before any handler or lookup sees it. No path variable
// may hold a NUL character: event types, state keys, transaction IDs and
// the like are stored as text, which PostgreSQL cannot hold NUL in, so both
// engines refuse it alike.
func checkPathIDs(path string, h http.Handler) http.Handler {
	if !strings.Contains(path, "{") {
		return h
	}
	var names []string
	for name := range pathIDChecks {
		if strings.Contains(path, "{"+name+"}") {
			names = append(names, name)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for name := range mux.Vars(r) {
			if strings.IndexByte(PathVar(r, name), 0) >= 0 {
				WriteError(w, r, InvalidParam("%s: contains a NUL character", name))
				return
			}
		}
		for _, name := range names {
			if err := pathIDChecks[name](PathVar(r, name)); err != nil {
				WriteError(w, r, InvalidParam("%s: %v", name, err))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
