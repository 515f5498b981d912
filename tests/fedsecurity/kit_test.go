// Package fedsecurity tests what federation must guarantee between servers
// that do not trust each other: that rooms whose servers wrote on diverged
// heads (a partition, a server down) converge on one state and one DAG once
// they talk again, and that what a server forges — signatures, hashes,
// senders, origins, keys out of their validity, servers the room's ACL
// denies, events the auth rules or the current state refuse — is refused or
// soft-failed as the spec says, and never shown to any client. Servers are
// real (tests/fedtest: TLS, discovery, signing) and talk through their own
// senders and /send; partitions are cut in the network's proxy.
package fedsecurity

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/federationapi"
	"matrixhs/federationapi/sender"
	"matrixhs/internal/httputil"
	"matrixhs/internal/racedetect"
	"matrixhs/storage"
	"matrixhs/tests/fedtest"
)

// converge is how long servers get to agree once they can talk again.
var converge = racedetect.Scale(20 * time.Second)

// quickRetry makes a server retry another soon after a partition heals
// (production backs off up to a minute).
var quickRetry = fedtest.WithSender(sender.Options{InitialBackoff: 50 * time.Millisecond, MaxBackoff: 250 * time.Millisecond})

// network is hs1, hs2 and hs3, sending to each other on their own.
type network struct {
	n             *fedtest.Network
	hs1, hs2, hs3 *fedtest.Server
	users         map[string]*fedtest.User
}

// newNetwork starts the servers, hs1 with the options given (the forger
// of the forgery tests).
func newNetwork(t *testing.T, hs1 ...fedtest.Option) *network {
	t.Helper()
	n := fedtest.NewNetwork(t)
	return &network{n: n, hs1: n.Start("hs1", append([]fedtest.Option{quickRetry}, hs1...)...),
		hs2: n.Start("hs2", quickRetry), hs3: n.Start("hs3", quickRetry)}
}

// user registers localpart on s the first time it is asked for.
func (nw *network) user(t *testing.T, s *fedtest.Server, localpart string) *fedtest.User {
	t.Helper()
	key := localpart + ":" + string(s.Name)
	if u, ok := nw.users[key]; ok {
		return u
	}
	if nw.users == nil {
		nw.users = map[string]*fedtest.User{}
	}
	u := s.Register(t, localpart)
	nw.users[key] = u
	return u
}

func (nw *network) servers() []*fedtest.Server { return []*fedtest.Server{nw.hs1, nw.hs2, nw.hs3} }

// setPower sets one user's power level in the room (as u, who must be
// allowed to) and returns the event ID.
func setPower(t *testing.T, u *fedtest.User, roomID, userID string, level int) string {
	t.Helper()
	var pl map[string]any
	u.MustDo(t, "GET", fedtest.RoomPath(roomID, "/state/m.room.power_levels/"), nil, &pl)
	users, _ := pl["users"].(map[string]any)
	if users == nil {
		users = map[string]any{}
	}
	users[userID] = level
	pl["users"] = users
	return u.SetState(t, roomID, "m.room.power_levels", "", pl)
}

// membership sets u's own membership or another's (kick, ban) through
// the client API and returns the event ID.
func member(t *testing.T, u *fedtest.User, roomID, target, membership string) string {
	t.Helper()
	return u.SetState(t, roomID, "m.room.member", target, map[string]any{"membership": membership})
}

// quiesce waits until every server's room has the single forward
// extremity last (everything before it delivered everywhere).
func quiesce(t *testing.T, roomID, last string, servers ...*fedtest.Server) {
	t.Helper()
	fedtest.WaitFor(t, converge, "servers to hold "+last+" as their room's only head", func() error {
		for _, s := range servers {
			info, err := s.DB.Room(t.Context(), roomID)
			if err != nil {
				return fmt.Errorf("%s: %w", s.Name, err)
			}
			if !slices.Equal(info.Extremities, []string{last}) {
				return fmt.Errorf("%s's head is %v", s.Name, info.Extremities)
			}
		}
		return nil
	})
}

// waitMembership waits until every server has each user's membership as
// want in the room's current state.
func waitMembership(t *testing.T, roomID, want string, users []*fedtest.User, servers ...*fedtest.Server) {
	t.Helper()
	fedtest.WaitFor(t, converge, "memberships to reach every server", func() error {
		for _, s := range servers {
			for _, u := range users {
				if m, err := s.Rooms.Membership(t.Context(), roomID, u.ID); err != nil || m != want {
					return fmt.Errorf("%s has %s as %q (%v)", s.Name, u.ID, m, err)
				}
			}
		}
		return nil
	})
}

// waitHeld waits until every server holds each event in its room's DAG.
func waitHeld(t *testing.T, roomID string, events []string, servers ...*fedtest.Server) {
	t.Helper()
	fedtest.WaitFor(t, converge, "events to reach every server", func() error {
		for _, s := range servers {
			for _, id := range events {
				if st := s.Status(id); !inDAG(st) {
					return fmt.Errorf("%s holds %s with status %d", s.Name, id, st)
				}
			}
		}
		return nil
	})
}

// powerOf is a user's power level in the room as u's server serves it.
func powerOf(t *testing.T, u *fedtest.User, roomID, userID string) float64 {
	t.Helper()
	users, _ := stateContent(t, u, roomID, "m.room.power_levels", "")["users"].(map[string]any)
	level, _ := users[userID].(float64)
	return level
}

// wantMembers checks memberships in the room as u's server serves them.
func wantMembers(t *testing.T, u *fedtest.User, roomID string, want map[*fedtest.User]string) {
	t.Helper()
	for who, m := range want {
		if got := stateContent(t, u, roomID, "m.room.member", who.ID)["membership"]; got != m {
			t.Errorf("%s: %s is %v, want %s", u.S.Name, who.ID, got, m)
		}
	}
}

// stateKey names a state entry in failure messages and maps.
func stateKey(e fedtest.ClientEvent) string {
	key := ""
	if e.StateKey != nil {
		key = *e.StateKey
	}
	return e.Type + "|" + key
}

// stateIDs is a room's current state as a user's /state serves it: event
// IDs by type and state key.
func stateIDs(t *testing.T, u *fedtest.User, roomID string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range u.RoomState(t, roomID) {
		out[stateKey(e)] = e.EventID
	}
	return out
}

// stateContent is the content of one current state event as u's server
// serves it (nil when unset).
func stateContent(t *testing.T, u *fedtest.User, roomID, typ, key string) map[string]any {
	t.Helper()
	status, raw := u.Do(t, "GET", fedtest.RoomPath(roomID, "/state/"+typ+"/"+key), nil, nil)
	if status == 404 {
		return nil
	}
	var out map[string]any
	if status != 200 || json.Unmarshal(raw, &out) != nil {
		t.Fatalf("state %s/%s on %s: %d %s", typ, key, u.S.Name, status, raw)
	}
	return out
}

// diffState describes how two states differ ("" when equal), naming the
// events names knows.
func diffState(a, b map[string]string, names map[string]string) string {
	name := func(id string) string {
		if id == "" {
			return "-"
		}
		if n, ok := names[id]; ok {
			return id + " (" + n + ")"
		}
		return id
	}
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if a[k] != b[k] {
			diffs = append(diffs, fmt.Sprintf("%s: %s vs %s", k, name(a[k]), name(b[k])))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: - vs %s", k, name(b[k])))
		}
	}
	return strings.Join(diffs, "; ")
}

// inDAG reports whether a stored status puts an event in the room's DAG
// (soft-failed events are in it: others may build on them).
func inDAG(status int) bool {
	return status == storage.EventAccepted || status == storage.EventSoftFailed
}

// dagSince is the set of events after stop that any of the users' servers
// shows in /messages: every event of the DAG reaches the timeline of the
// server whose user sent it.
func dagSince(t *testing.T, roomID, stop string, users ...*fedtest.User) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, u := range users {
		for _, e := range u.MessagesAfter(t, roomID, stop) {
			out[e.EventID] = true
		}
	}
	return out
}

// errcode is the errcode of a Matrix error body.
func errcode(raw []byte) string {
	var e struct {
		Errcode string `json:"errcode"`
	}
	json.Unmarshal(raw, &e)
	return e.Errcode
}

// sortedKeys lists a set.
func sortedKeys(set map[string]bool) []string {
	out := slices.Collect(maps.Keys(set))
	sort.Strings(out)
	return out
}

// liar stands in for hs1's /get_missing_events and /state_ids, as a
// malicious server answers them: from what the test sets (404 for events
// it set nothing for; the missing events it was given, else none).
type liar struct {
	mu       sync.Mutex
	stateIDs map[string]any // answers by event ID
	missing  []json.RawMessage
}

// routes installs the stand-ins (fedtest.WithFederation(l.routes)).
func (l *liar) routes(o *federationapi.Options) {
	o.ExtraRoutes = func(rt *httputil.Router, api *federationapi.API) {
		rt.Handle("/_matrix/federation/v1/get_missing_events/{roomId}", api.Auth.Handler(func(*http.Request, spec.ServerName) (any, error) {
			l.mu.Lock()
			defer l.mu.Unlock()
			return map[string]any{"events": append([]json.RawMessage{}, l.missing...)}, nil
		}), http.MethodPost)
		rt.Handle("/_matrix/federation/v1/state_ids/{roomId}", api.Auth.Handler(func(r *http.Request, _ spec.ServerName) (any, error) {
			l.mu.Lock()
			defer l.mu.Unlock()
			if ans, ok := l.stateIDs[r.URL.Query().Get("event_id")]; ok {
				return ans, nil
			}
			return nil, httputil.NotFound("no such event")
		}), http.MethodGet)
	}
}

// answerStateIDs makes the liar answer /state_ids for eventID with what
// s serves as the state before the event before.
func (l *liar) answerStateIDs(t *testing.T, s *fedtest.Server, roomID, eventID, before string) {
	t.Helper()
	fr, err := s.Rooms.FederationRoom(t.Context(), roomID)
	if err != nil {
		t.Fatal(err)
	}
	state, chain, err := s.Rooms.StateBeforeEvent(t.Context(), fr, before)
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stateIDs == nil {
		l.stateIDs = map[string]any{}
	}
	l.stateIDs[eventID] = map[string]any{"pdu_ids": state, "auth_chain_ids": chain}
}
