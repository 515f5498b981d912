package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"
)

// A database from before this session's migrations (schema 11) keeps its
// notifications and memberships through the upgrade: push actions moved to
// stream order, the covering membership index, receipts by position.
func TestUpgradeFromSchema11KeepsData(t *testing.T) {
	sqliteOnly(t, "upgrades a database of an older schema; no PostgreSQL database predates the port")
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrateUpTo(ctx, raw, dialectSQLite, 11); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO rooms (room_nid, room_id, room_version, created_ts) VALUES (1, '!r:x', '12', 1)`,
		`INSERT INTO current_state (room_nid, type, state_key, event_nid, membership, stream_pos) VALUES (1, 'm.room.member', '@u:x', 7, 'join', 5)`,
		`INSERT INTO push_actions (user_id, room_nid, event_nid, stream_pos, highlight, thread_id, actions) VALUES ('@u:x', 1, 10, 10, 0, 'main', '["notify"]')`,
		`INSERT INTO push_actions (user_id, room_nid, event_nid, stream_pos, highlight, thread_id, actions) VALUES ('@u:x', 1, 11, 11, 1, 'main', '["notify"]')`,
		`INSERT INTO push_actions (user_id, room_nid, event_nid, stream_pos, highlight, thread_id, actions) VALUES ('@v:x', 1, 11, 11, 0, 'main', '["notify"]')`,
		`INSERT INTO receipts (room_nid, user_id, receipt_type, thread_id, event_id, event_pos, ts, stream_pos) VALUES (1, '@u:x', 'm.read', '', '$a', 10, 1, 12)`,
		`UPDATE stream_position SET pos = 12`,
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	raw.Close()

	db, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("upgrading: %v", err)
	}
	defer db.Close()
	main, _, err := db.UnreadCounts(ctx, 1, "@u:x", false, 12)
	if err != nil || main.Notifications != 1 || main.Highlights != 1 {
		t.Fatalf("unread after upgrade = %+v, %v; want the one after the receipt, highlighted", main, err)
	}
	ms, err := db.MembershipsAt(ctx, "@u:x", 12)
	if err != nil || len(ms) != 1 || ms[0].Membership != "join" || ms[0].StreamPos != 5 || ms[0].EventNID != 7 {
		t.Fatalf("memberships after upgrade = %+v, %v", ms, err)
	}
	changed, err := db.RoomsChangedSince(ctx, 11, 12)
	if err != nil || !changed.Rooms[1] {
		t.Fatalf("rooms changed by the receipt = %v, %v", changed, err)
	}
}

// oldRoom is a room written as the code before the ordering model
// (migration 0030) wrote it: a delta snapshot per state event, the state
// before each timeline event, current_state with membership.
type oldRoom struct {
	nid     int64
	id      string
	snap    int64
	chain   int
	state   map[StateKey]int64
	current map[StateKey]string // membership by member key
}

// oldWriter writes rooms into a database at schema 20.
type oldWriter struct {
	t   *testing.T
	raw *sql.DB
	pos int64
	seq int
}

func (w *oldWriter) exec(q string, args ...any) {
	w.t.Helper()
	if _, err := w.raw.Exec(q, args...); err != nil {
		w.t.Fatalf("%s: %v", q, err)
	}
}

func (w *oldWriter) room(id, version string) *oldRoom {
	w.t.Helper()
	r := &oldRoom{id: id, state: map[StateKey]int64{}, current: map[StateKey]string{}}
	if err := w.raw.QueryRow(`INSERT INTO rooms (room_id, room_version, created_ts) VALUES ($1, $2, 1) RETURNING room_nid`, id, version).
		Scan(&r.nid); err != nil {
		w.t.Fatal(err)
	}
	return r
}

// event stores an event; top holds top-level keys besides content (a
// pre-v11 redaction's redacts). Timeline events take the next position
// and state events the next snapshot; outliers neither.
func (w *oldWriter) event(r *oldRoom, typ string, stateKey *string, sender string, content any, top map[string]any, timeline bool) (string, int64) {
	w.t.Helper()
	w.seq++
	id := fmt.Sprintf("$old%d", w.seq)
	ev := map[string]any{"event_id": id, "room_id": r.id, "type": typ, "sender": sender, "content": content}
	for k, v := range top {
		ev[k] = v
	}
	if stateKey != nil {
		ev["state_key"] = *stateKey
	}
	raw, _ := json.Marshal(ev)
	var pos, before any
	status := EventOutlier
	if timeline {
		w.pos++
		pos, before, status = w.pos, r.snap, EventAccepted
	}
	var nid int64
	if err := w.raw.QueryRow(`INSERT INTO events (event_id, room_nid, type, state_key, sender, depth, origin_server_ts, stream_pos,
			state_before, status, json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, COALESCE($9, 0), $10, $11) RETURNING event_nid`,
		id, r.nid, typ, stateKey, sender, w.seq, w.seq, pos, before, status, string(raw)).Scan(&nid); err != nil {
		w.t.Fatal(err)
	}
	if !timeline || stateKey == nil {
		return id, nid
	}
	key := StateKey{typ, *stateKey}
	parent, chain := r.snap, r.chain+1
	if parent == 0 {
		chain = 0
	}
	if err := w.raw.QueryRow(`INSERT INTO state_snapshots (room_nid, parent_nid, chain_len) VALUES ($1, $2, $3) RETURNING snapshot_nid`,
		r.nid, parent, chain).Scan(&r.snap); err != nil {
		w.t.Fatal(err)
	}
	r.chain = chain
	w.exec(`INSERT INTO state_entries (snapshot_nid, type, state_key, event_nid) VALUES ($1, $2, $3, $4)`, r.snap, typ, *stateKey, nid)
	var membership any
	if typ == "m.room.member" {
		if m, ok := content.(map[string]any)["membership"].(string); ok {
			membership = m
		}
	}
	w.exec(`INSERT INTO current_state (room_nid, type, state_key, event_nid, membership, stream_pos) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (room_nid, type, state_key) DO UPDATE SET event_nid = excluded.event_nid, membership = excluded.membership,
			stream_pos = excluded.stream_pos`, r.nid, typ, *stateKey, nid, membership, w.pos)
	r.state[key] = nid
	w.exec(`UPDATE rooms SET state_snapshot = $2 WHERE room_nid = $1`, r.nid, r.snap)
	return id, nid
}

// oldStateAt is StateAt as the code before migration 0030 computed it:
// the state before the room's last timeline event at or before pos, plus
// that event when it is state.
func oldStateAt(t *testing.T, raw *sql.DB, roomNID, pos int64) map[StateKey]int64 {
	t.Helper()
	var nid, before int64
	var typ string
	var sk sql.NullString
	err := raw.QueryRow(`SELECT event_nid, state_before, type, state_key FROM events
		WHERE room_nid = $1 AND stream_pos IS NOT NULL AND stream_pos <= $2 ORDER BY stream_pos DESC LIMIT 1`, roomNID, pos).
		Scan(&nid, &before, &typ, &sk)
	if errors.Is(err, sql.ErrNoRows) {
		return map[StateKey]int64{}
	}
	if err != nil {
		t.Fatal(err)
	}
	state, err := readSnapshot(context.Background(), raw, before)
	if err != nil {
		t.Fatal(err)
	}
	if sk.Valid {
		state[StateKey{typ, sk.String}] = nid
	}
	return state
}

// oldView is what the code before migration 0030 judged an event's
// visibility by: the user's membership and the room's history visibility
// as of the marks (their changes) before the event's position.
func oldView(t *testing.T, raw *sql.DB, roomNID, pos int64, userID string) SnapshotView {
	t.Helper()
	var v SnapshotView
	for _, q := range []struct {
		dest  *string
		query string
	}{
		{&v.Membership, `SELECT CASE json_type(json, '$.content.membership') WHEN 'text' THEN json_extract(json, '$.content.membership') ELSE '' END
			FROM events WHERE room_nid = $1 AND type = 'm.room.member' AND state_key = $3 AND stream_pos IS NOT NULL AND stream_pos < $2
			ORDER BY stream_pos DESC LIMIT 1`},
		{&v.Visibility, `SELECT CASE json_type(json, '$.content.history_visibility') WHEN 'text' THEN json_extract(json, '$.content.history_visibility') ELSE '' END
			FROM events WHERE room_nid = $1 AND type = 'm.room.history_visibility' AND state_key = '' AND stream_pos IS NOT NULL AND stream_pos < $2
			ORDER BY stream_pos DESC LIMIT 1 -- $3 unused`},
	} {
		if err := raw.QueryRow(q.query, roomNID, pos, userID).Scan(q.dest); err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Fatal(err)
		}
	}
	return v
}

// A database built before the ordering model (schema 20), with rooms of
// two versions, state changes, messages, redactions and outliers, upgrades
// with the filterable values, redaction targets and current state after
// each event filled in, and answers StateAt and the visibility questions
// exactly as before.
func TestUpgradeToOrderingModelKeepsStateAndVisibility(t *testing.T) {
	sqliteOnly(t, "upgrades a database of an older schema; no PostgreSQL database predates the port")
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := migrateUpTo(ctx, raw, dialectSQLite, 20); err != nil {
		t.Fatal(err)
	}
	w := &oldWriter{t: t, raw: raw}
	r10, r11 := w.room("!ten:x", "10"), w.room("!eleven:x", "11")
	state := func(r *oldRoom, typ, key, sender string, content map[string]any) string {
		id, _ := w.event(r, typ, &key, sender, content, nil, true)
		return id
	}
	msg := func(r *oldRoom, sender string) string {
		id, _ := w.event(r, "m.room.message", nil, sender, map[string]any{"body": "m"}, nil, true)
		return id
	}
	join, leave := map[string]any{"membership": "join"}, map[string]any{"membership": "leave"}
	values := map[string]*string{} // event ID to the state_value it must get
	for _, r := range []*oldRoom{r10, r11} {
		values[state(r, "m.room.create", "", "@alice:x", map[string]any{})] = nil
		values[state(r, "m.room.member", "@alice:x", "@alice:x", join)] = ptr("join")
		values[state(r, "m.room.join_rules", "", "@alice:x", map[string]any{"join_rule": "public"})] = ptr("public")
		values[state(r, "m.room.history_visibility", "", "@alice:x", map[string]any{"history_visibility": "shared"})] = ptr("shared")
	}
	first := msg(r10, "@alice:x")
	msg(r11, "@alice:x")
	values[state(r10, "m.room.member", "@bob:x", "@bob:x", join)] = ptr("join")
	values[state(r11, "m.room.member", "@bob:x", "@bob:x", join)] = ptr("join")
	msg(r10, "@bob:x")
	values[state(r10, "m.room.history_visibility", "", "@alice:x", map[string]any{"history_visibility": "joined"})] = ptr("joined")
	msg(r10, "@alice:x")
	values[state(r10, "m.room.member", "@bob:x", "@bob:x", leave)] = ptr("leave")
	msg(r10, "@alice:x")
	values[state(r10, "m.room.member", "@carol:x", "@carol:x", map[string]any{"membership": 5})] = nil // malformed
	values[state(r11, "m.room.join_rules", "", "@alice:x", map[string]any{"join_rule": []string{"x"}})] = nil
	red10, _ := w.event(r10, "m.room.redaction", nil, "@alice:x", map[string]any{}, map[string]any{"redacts": first}, true)
	second := msg(r11, "@bob:x")
	red11, _ := w.event(r11, "m.room.redaction", nil, "@alice:x", map[string]any{"redacts": second}, nil, true)
	outlierID, _ := w.event(r11, "m.room.member", ptr("@dave:x"), "@dave:x", map[string]any{"membership": "invite"}, nil, false)
	values[outlierID] = ptr("invite")
	lastMsg := msg(r11, "@alice:x") // r11 ends on a message, r10 on a redaction
	w.exec(`UPDATE stream_position SET pos = $1`, w.pos)

	// What the old code answered, before the upgrade.
	users := []string{"@alice:x", "@bob:x", "@carol:x", "@dave:x"}
	type viewKey struct {
		event, user string
	}
	oldStates := map[[2]int64]map[StateKey]int64{}
	oldViews := map[viewKey]SnapshotView{}
	rows, err := raw.Query(`SELECT event_id, room_nid, stream_pos FROM events WHERE stream_pos IS NOT NULL ORDER BY stream_pos`)
	if err != nil {
		t.Fatal(err)
	}
	type timelineEvent struct {
		id       string
		room, at int64
	}
	var timeline []timelineEvent
	for rows.Next() {
		var e timelineEvent
		rows.Scan(&e.id, &e.room, &e.at)
		timeline = append(timeline, e)
	}
	rows.Close()
	for _, r := range []*oldRoom{r10, r11} {
		for pos := int64(0); pos <= w.pos+1; pos++ {
			oldStates[[2]int64{r.nid, pos}] = oldStateAt(t, raw, r.nid, pos)
		}
	}
	for _, e := range timeline {
		for _, u := range users {
			oldViews[viewKey{e.id, u}] = oldView(t, raw, e.room, e.at, u)
		}
	}
	raw.Close()

	db, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("upgrading: %v", err)
	}
	defer db.Close()
	k := &roomKit{t: t, db: db, ctx: ctx}
	for id, want := range values {
		if got := k.row(id).StateValue; !equalPtr(got, want) {
			t.Errorf("%s: state_value %s, want %s", id, deref(got), deref(want))
		}
	}
	for id, want := range map[string]*string{red10: &first, red11: &second} {
		if got := k.row(id).Redacts; !equalPtr(got, want) {
			t.Errorf("redaction %s: redacts %s, want %s", id, deref(got), *want)
		}
		if rs, err := db.RedactionsOf(ctx, *want); err != nil || len(rs) != 1 || rs[0].EventID != id {
			t.Errorf("redactions of %s = %v, %v", *want, eventIDs(rs), err)
		}
	}
	if r := k.row(outlierID); r.CurrentAfter != 0 || r.StreamPos != nil {
		t.Errorf("outlier row %+v: want no position and no current state", r)
	}
	if r := k.row(lastMsg); r.CurrentAfter != r11.snap || r.StateBefore != r11.snap {
		t.Errorf("r11's last message: current_after %d, state before %d; want the room's snapshot %d", r.CurrentAfter, r.StateBefore, r11.snap)
	}
	for key, want := range oldStates {
		got, err := db.StateAt(ctx, key[0], key[1])
		if err != nil || !maps.Equal(got, want) {
			t.Errorf("room %d: StateAt(%d) = %v, %v; before the upgrade %v", key[0], key[1], got, err, want)
		}
	}
	for key, want := range oldViews {
		e, err := db.EventByID(ctx, key.event)
		if err != nil {
			t.Fatal(err)
		}
		got, err := db.SnapshotVisibility(ctx, e.StateBefore, key.user)
		if err != nil || got != want {
			t.Errorf("%s for %s: %+v, %v; before the upgrade %+v", key.event, key.user, got, err, want)
		}
	}
	now, err := db.VisibilityNow(ctx, r10.nid, "@bob:x")
	if err != nil || now.Membership != "leave" || now.Visibility != "joined" {
		t.Errorf("bob's visibility now = %+v, %v", now, err)
	}
	if m, _ := db.Membership(ctx, r10.nid, "@bob:x"); m != "leave" {
		t.Errorf("bob's membership = %q", m)
	}

	// The upgraded rooms go on: history pages in order, backfill counts
	// down from -1, new state extends the migrated state.
	var streamOrder []string
	for _, e := range timeline {
		if e.room == r11.nid {
			streamOrder = append(streamOrder, e.id)
		}
	}
	evs, err := db.TopoTimeline(ctx, r11.nid, TopoPos{}, TopoEnd, false, 100)
	if err != nil || !slices.Equal(eventIDs(evs), streamOrder) {
		t.Fatalf("r11 in topological order: %v, %v; want the stream order %v", eventIDs(evs), err, streamOrder)
	}
	k = &roomKit{t: t, db: db, ctx: ctx, id: r10.id, nid: r10.nid, state: maps.Clone(r10.state), ids: map[string]int64{}, depth: 100}
	old := k.event("m.room.message", nil, "@alice:x", map[string]any{"body": "history"})
	if out := k.store(EventWrite{Event: old, Placement: Backfill}); out.StreamPos != -1 {
		t.Fatalf("first backfill after the upgrade at %d", out.StreamPos)
	}
	k.setState("m.room.member", "@carol:x", "@carol:x", map[string]any{"membership": "join"})
	k.wantCurrent("a state change after the upgrade")
}
