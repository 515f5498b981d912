// Package roomview is what a user sees of rooms through the client API,
// shared by its endpoints, sync and the admin API: whether they may read a
// room and up to where (Access), which events history visibility and their
// ignore list let them see, timeline pages in stream and topological order
// with their tokens, room state at a position, and events rendered in the
// client format (unsigned data, bundled aggregations, event_fields).
package roomview

import (
	"github.com/sirupsen/logrus"

	"matrixhs/roomserver"
	"matrixhs/storage"
)

// Reader reads rooms as their users may see them.
type Reader struct {
	db    *storage.DB
	rooms *roomserver.Roomserver
	log   logrus.FieldLogger
}

// New returns a Reader.
func New(db *storage.DB, rooms *roomserver.Roomserver, log logrus.FieldLogger) *Reader {
	return &Reader{db: db, rooms: rooms, log: log}
}
