// Package admin serves a Synapse-compatible subset of the admin API
// (/_synapse/admin): users, devices, rooms, registration tokens, server
// notices and shared-secret registration, so the tools admins already use
// (synapse-admin, scripts, test suites) work. Every endpoint but
// shared-secret registration is for server admins only.
package admin

import (
	"github.com/sirupsen/logrus"

	"matrixhs/clientapi/internal/roomview"
	"matrixhs/clientapi/internal/users"
	"matrixhs/config"
	"matrixhs/internal/accounts"
	"matrixhs/internal/auth"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// API holds what the admin endpoints need.
type API struct {
	cfg      *config.Config
	db       *storage.DB
	accounts *accounts.Service
	authn    *auth.Auth
	rooms    *roomserver.Roomserver
	users    *users.Service
	nonces   *nonceStore
	log      logrus.FieldLogger
	// fedSender retries federation destinations (admin_federation.go).
	fedSender DestinationWaker
	// tasks are the room deletions and history purges under way.
	tasks *tasks
	// view formats events for clients.
	view *roomview.Reader
}

// New builds the admin API.
func New(cfg *config.Config, db *storage.DB, acc *accounts.Service, authn *auth.Auth, rooms *roomserver.Roomserver,
	us *users.Service, log logrus.FieldLogger) *API {
	return &API{cfg: cfg, db: db, accounts: acc, authn: authn, rooms: rooms, users: us, nonces: newNonceStore(), log: log,
		tasks: newTasks(acc.Now), view: roomview.New(db, rooms, log)}
}
