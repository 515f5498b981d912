// Package syncapi serves /sync and Simplified Sliding Sync (MSC4186): the
// long-poll that waits on the notifier for changes that concern its user,
// and the builders that put together what changed since the client's
// token: rooms (timeline, state, ephemeral data, account data, unread
// counts), presence, and the end-to-end encryption parts (to-device
// messages, device lists, key counts). Typing, presence and receipts come
// from internal/ephemeral, keys and to-device messages from internal/e2ee,
// and rooms as the user may see them from clientapi/internal/roomview.
package syncapi

import (
	"net/http"
	"sync"

	"github.com/sirupsen/logrus"

	"matrixhs/clientapi/internal/roomview"
	"matrixhs/clientapi/internal/users"
	"matrixhs/internal/auth"
	"matrixhs/internal/e2ee"
	"matrixhs/internal/ephemeral"
	"matrixhs/internal/httputil"
	"matrixhs/internal/notifier"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// API holds what the sync endpoints need.
type API struct {
	db     *storage.DB
	rooms  *roomserver.Roomserver
	view   *roomview.Reader
	users  *users.Service
	eph    *ephemeral.Service
	keys   *e2ee.Service
	notify *notifier.Notifier
	authn  *auth.Auth
	ss     *ssConns // sliding-sync connections
	log    logrus.FieldLogger
	// stopping is closed when the server shuts down, to end long-polls.
	stopping chan struct{}
	stopOnce sync.Once
}

// Deps are the services sync reads from.
type Deps struct {
	DB        *storage.DB
	Rooms     *roomserver.Roomserver
	View      *roomview.Reader
	Users     *users.Service
	Ephemeral *ephemeral.Service
	Keys      *e2ee.Service
	Notifier  *notifier.Notifier
	Auth      *auth.Auth
	Log       logrus.FieldLogger
}

// New builds the sync API.
func New(d Deps) *API {
	return &API{db: d.DB, rooms: d.Rooms, view: d.View, users: d.Users, eph: d.Ephemeral, keys: d.Keys, notify: d.Notifier,
		authn: d.Auth, ss: newSSConns(), log: d.Log, stopping: make(chan struct{})}
}

// Register adds the sync endpoints to the server's route table.
func (a *API) Register(rt *httputil.Router) {
	rt.Client(http.MethodGet, "/sync", a.authn.JSON(a.sync))
	rt.Exact(http.MethodPost, "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", a.authn.JSON(a.slidingSync))
}

// Stop ends waiting long-polls: they answer at once. Call it when the
// server begins to shut down.
func (a *API) Stop() { a.stopOnce.Do(func() { close(a.stopping) }) }
