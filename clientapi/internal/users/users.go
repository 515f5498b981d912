// Package users is what the client API does with local users beyond
// internal/accounts, shared by its endpoints, sync and the admin API:
// changes that reach into the user's rooms (profile updates sent as member
// events, deactivation leaving every room), and the user's push rules as
// clients read them.
package users

import (
	"github.com/sirupsen/logrus"

	"matrixhs/internal/accounts"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// Service changes and reads local users.
type Service struct {
	db       *storage.DB
	accounts *accounts.Service
	rooms    *roomserver.Roomserver
	log      logrus.FieldLogger
}

// New returns the service.
func New(db *storage.DB, acc *accounts.Service, rooms *roomserver.Roomserver, log logrus.FieldLogger) *Service {
	return &Service{db: db, accounts: acc, rooms: rooms, log: log}
}
