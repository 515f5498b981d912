// Package fedscenario runs end-to-end scenarios across three federating
// homeservers (tests/fedtest): a room used from every server, servers
// going down and coming back, queues surviving restarts. Clients act
// through mautrix; the checks read each server's client API raw and
// require the servers to agree: the same timeline (event IDs in the same
// order, the same content, redactions and edits), the same history
// through /messages both ways, the same room state.
package fedscenario

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/fedtest"
)

// deadline bounds every wait of these tests for federation to deliver.
const deadline = 30 * time.Second

// timelineFilter asks /sync for up to 100 timeline events per room.
const timelineFilter = `{"room":{"timeline":{"limit":100}}}`

// watcher follows one user's /sync and remembers the timeline events it
// delivered: it is how the tests wait for an event to reach a server.
type watcher struct {
	u     *fedtest.MautrixUser
	since string
	seen  map[string]bool
}

func newWatcher(u *fedtest.MautrixUser) *watcher {
	return &watcher{u: u, seen: map[string]bool{}}
}

// waitFor long-polls /sync until every event of ids has appeared in the
// room's timeline (or state, for a gappy sync).
func (w *watcher) waitFor(t *testing.T, roomID string, ids ...string) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		var missing []string
		for _, id := range ids {
			if !w.seen[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s never saw %v in %s", w.u.HS.Name, missing, roomID)
		}
		res := w.u.Sync(w.since, timelineFilter, 2*time.Second)
		w.since, _ = res["next_batch"].(string)
		for _, section := range []string{"timeline", "state"} {
			for _, e := range fedtest.List(fedtest.Get(res, "rooms", "join", roomID, section, "events")) {
				if id, ok := fedtest.Get(e, "event_id").(string); ok {
					w.seen[id] = true
				}
			}
		}
	}
}

// waitUntil polls cond (for what no request can wait on) until it holds,
// failing after the deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// group is one watcher per server, for waiting until an event reached all.
type group []*watcher

func (g group) waitFor(t *testing.T, roomID string, ids ...string) {
	t.Helper()
	for _, w := range g {
		w.waitFor(t, roomID, ids...)
	}
}

// ev is what the servers must agree on about one event as clients see it.
type ev struct {
	ID, Type, Sender string
	StateKey         *string
	Content          string // canonical JSON
	RedactedBy       string
	Relations        string // unsigned["m.relations"], canonical JSON
}

func (e ev) String() string {
	s := e.ID + " " + e.Type
	if e.StateKey != nil {
		s += "/" + *e.StateKey
	}
	if e.RedactedBy != "" {
		s += " redacted by " + e.RedactedBy
	}
	return s
}

func evOf(t *testing.T, raw any) ev {
	t.Helper()
	m, _ := raw.(map[string]any)
	e := ev{}
	e.ID, _ = m["event_id"].(string)
	e.Type, _ = m["type"].(string)
	e.Sender, _ = m["sender"].(string)
	if sk, ok := m["state_key"].(string); ok {
		e.StateKey = &sk
	}
	e.Content = canonical(t, m["content"])
	if rb, ok := fedtest.Get(m, "unsigned", "redacted_because", "event_id").(string); ok {
		e.RedactedBy = rb
	}
	if rel := fedtest.Get(m, "unsigned", "m.relations"); rel != nil {
		e.Relations = canonical(t, withoutLocal(rel))
	}
	return e
}

// withoutLocal drops what each server adds for its own reader from the
// unsigned sections within v (the age, the reader's membership, the
// transaction ID of the sender's device).
func withoutLocal(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if k == "unsigned" {
				if u, ok := val.(map[string]any); ok {
					u = maps.Clone(u)
					delete(u, "age")
					delete(u, "membership")
					delete(u, "transaction_id")
					val = u
				}
			}
			out[k] = withoutLocal(val)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = withoutLocal(val)
		}
		return out
	}
	return v
}

func canonical(t *testing.T, v any) string {
	t.Helper()
	out, err := json.Marshal(v) // maps marshal with sorted keys
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func evs(t *testing.T, raw []any) []ev {
	t.Helper()
	out := make([]ev, len(raw))
	for i, r := range raw {
		out[i] = evOf(t, r)
	}
	return out
}

func idsOf(list []ev) []string {
	out := make([]string, len(list))
	for i, e := range list {
		out[i] = e.ID
	}
	return out
}

// syncTimeline is the room's timeline in an initial /sync of u (the
// newest limit events). It fails unless the state the sync gives (its
// state section, then the timeline's state events) is the room's current
// state on u's server.
func syncTimeline(t *testing.T, u *fedtest.MautrixUser, roomID string, limit int) []ev {
	t.Helper()
	res := u.Sync("", fmt.Sprintf(`{"room":{"timeline":{"limit":%d}}}`, limit), 0)
	room := fedtest.Get(res, "rooms", "join", roomID)
	timeline := evs(t, fedtest.List(fedtest.Get(room, "timeline", "events")))
	state := map[string]string{}
	for _, e := range append(evs(t, fedtest.List(fedtest.Get(room, "state", "events"))), timeline...) {
		if e.StateKey != nil {
			state[e.Type+"|"+*e.StateKey] = e.ID
		}
	}
	if current := stateOf(t, u, roomID); !maps.Equal(state, current) {
		t.Fatalf("%s: the state /sync gives is not the room's state:\n%v\n%v", u.HS.Name, state, current)
	}
	return timeline
}

// messages pages /messages in one direction (b from the newest event, f
// from the room's start) until the server says there is no more, and
// returns every event in the order served.
func messages(t *testing.T, u *fedtest.MautrixUser, roomID, dir string) []ev {
	t.Helper()
	var out []ev
	from := ""
	for page := 0; ; page++ {
		if page > 200 {
			t.Fatalf("%s: /messages dir=%s does not end", u.HS.Name, dir)
		}
		q := url.Values{"dir": {dir}, "limit": {"40"}}
		if from != "" {
			q.Set("from", from)
		}
		res := u.Must("GET", fedtest.RoomPath(roomID, "/messages?"+q.Encode()), nil)
		chunk := fedtest.List(res["chunk"])
		out = append(out, evs(t, chunk)...)
		end, _ := res["end"].(string)
		if end == "" || len(chunk) == 0 {
			return out
		}
		from = end
	}
}

// stateOf is the room's current state on u's server: (type, state key) to
// event ID.
func stateOf(t *testing.T, u *fedtest.MautrixUser, roomID string) map[string]string {
	t.Helper()
	r := u.Do("GET", fedtest.RoomPath(roomID, "/state"), nil)
	var list []map[string]any
	if r.Status != 200 || json.Unmarshal(r.Raw, &list) != nil {
		t.Fatalf("%s: /state: %d %s", u.HS.Name, r.Status, r.Raw)
	}
	out := map[string]string{}
	for _, e := range list {
		out[fmt.Sprintf("%v|%v", e["type"], e["state_key"])], _ = e["event_id"].(string)
	}
	return out
}

// agreeOn fails unless every server's list equals the first one's.
func agreeOn(t *testing.T, what string, names []string, lists [][]ev) {
	t.Helper()
	for i := 1; i < len(lists); i++ {
		if !slices.EqualFunc(lists[0], lists[i], func(a, b ev) bool {
			return a.ID == b.ID && a.Type == b.Type && a.Sender == b.Sender && a.Content == b.Content &&
				a.RedactedBy == b.RedactedBy && a.Relations == b.Relations && ptrEq(a.StateKey, b.StateKey)
		}) {
			t.Fatalf("%s differs between %s and %s:\n%s", what, names[0], names[i], diff(lists[0], lists[i]))
		}
	}
}

func ptrEq(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

// diff describes where two event lists part.
func diff(a, b []ev) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d vs %d events\n", len(a), len(b))
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y ev
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		mark := "  "
		if x != y && !(x.ID == y.ID && x.Content == y.Content && x.RedactedBy == y.RedactedBy && x.Relations == y.Relations) {
			mark = "! "
		}
		fmt.Fprintf(&sb, "%s%-70s | %s\n", mark, x, y)
		if mark == "! " {
			fmt.Fprintf(&sb, "    %s %s\n    %s %s\n", x.Content, x.Relations, y.Content, y.Relations)
		}
	}
	return sb.String()
}

// agreeOnState fails unless every server holds the same current state.
func agreeOnState(t *testing.T, roomID string, users []*fedtest.MautrixUser) map[string]string {
	t.Helper()
	first := stateOf(t, users[0], roomID)
	for _, u := range users[1:] {
		if other := stateOf(t, u, roomID); !maps.Equal(first, other) {
			var sb strings.Builder
			for _, k := range slices.Sorted(maps.Keys(first)) {
				if first[k] != other[k] {
					fmt.Fprintf(&sb, "%s: %s vs %s\n", k, first[k], other[k])
				}
			}
			for k, v := range other {
				if _, ok := first[k]; !ok {
					fmt.Fprintf(&sb, "%s: (none) vs %s\n", k, v)
				}
			}
			t.Fatalf("state of %s differs between %s and %s:\n%s", roomID, users[0].HS.Name, u.HS.Name, sb.String())
		}
	}
	return first
}

// agreeOnRoom checks that the servers of users agree on the room: the
// newest tail events of /sync's timeline, /messages backwards to the
// room's creation and forwards from it, and the current state. It
// returns the history (oldest first).
func agreeOnRoom(t *testing.T, roomID string, tail int, users []*fedtest.MautrixUser) []ev {
	t.Helper()
	names := make([]string, len(users))
	var syncs, backs, fwds [][]ev
	for i, u := range users {
		names[i] = string(u.HS.Name)
		syncs = append(syncs, syncTimeline(t, u, roomID, tail))
		backs = append(backs, messages(t, u, roomID, "b"))
		fwds = append(fwds, messages(t, u, roomID, "f"))
	}
	if len(syncs[0]) != tail {
		t.Fatalf("%s's sync timeline has %d events, want %d", names[0], len(syncs[0]), tail)
	}
	agreeOn(t, "the /sync timeline", names, syncs)
	agreeOn(t, "/messages dir=b", names, backs)
	agreeOn(t, "/messages dir=f", names, fwds)
	history := backs[0]
	if len(history) == 0 || history[len(history)-1].Type != "m.room.create" {
		t.Fatalf("%s: /messages dir=b does not reach the room's creation: %v", names[0], idsOf(history))
	}
	slices.Reverse(history)
	if !slices.Equal(idsOf(history), idsOf(fwds[0])) {
		t.Fatalf("%s: /messages forwards is not backwards reversed:\n%s", names[0], diff(history, fwds[0]))
	}
	agreeOnState(t, roomID, users)
	return history
}

// Client actions through mautrix, failing the test on error.

func send(t *testing.T, u *fedtest.MautrixUser, roomID, body string) string {
	t.Helper()
	resp, err := u.SendText(u.Ctx(), id.RoomID(roomID), body)
	if err != nil {
		t.Fatalf("%s sending %q: %v", u.ID, body, err)
	}
	return string(resp.EventID)
}

func edit(t *testing.T, u *fedtest.MautrixUser, roomID, original, body string) string {
	t.Helper()
	content := &event.MessageEventContent{MsgType: event.MsgText, Body: body}
	content.SetEdit(id.EventID(original))
	resp, err := u.SendMessageEvent(u.Ctx(), id.RoomID(roomID), event.EventMessage, content)
	if err != nil {
		t.Fatalf("%s editing %s: %v", u.ID, original, err)
	}
	return string(resp.EventID)
}

func react(t *testing.T, u *fedtest.MautrixUser, roomID, target, key string) string {
	t.Helper()
	resp, err := u.SendReaction(u.Ctx(), id.RoomID(roomID), id.EventID(target), key)
	if err != nil {
		t.Fatalf("%s reacting to %s: %v", u.ID, target, err)
	}
	return string(resp.EventID)
}

func redact(t *testing.T, u *fedtest.MautrixUser, roomID, target string) string {
	t.Helper()
	resp, err := u.RedactEvent(u.Ctx(), id.RoomID(roomID), id.EventID(target))
	if err != nil {
		t.Fatalf("%s redacting %s: %v", u.ID, target, err)
	}
	return string(resp.EventID)
}

func setState(t *testing.T, u *fedtest.MautrixUser, roomID, typ, key string, content any) string {
	t.Helper()
	resp, err := u.SendStateEvent(u.Ctx(), id.RoomID(roomID), event.NewEventType(typ), key, content)
	if err != nil {
		t.Fatalf("%s setting %s/%s: %v", u.ID, typ, key, err)
	}
	return string(resp.EventID)
}

// powerLevels is the room's current power levels as u's server has them.
func powerLevels(t *testing.T, u *fedtest.MautrixUser, roomID string) map[string]any {
	t.Helper()
	return u.Must("GET", fedtest.RoomPath(roomID, "/state/m.room.power_levels/"), nil)
}

// stateEventID is the ID of the current state event (typ, key) on u's
// server.
func stateEventID(t *testing.T, u *fedtest.MautrixUser, roomID, typ, key string) string {
	t.Helper()
	id, ok := stateOf(t, u, roomID)[typ+"|"+key]
	if !ok {
		t.Fatalf("%s has no %s/%s in %s", u.HS.Name, typ, key, roomID)
	}
	return id
}
