package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"testing"
)

// roomKit stores a room's events the way the roomserver does, through
// StoreEvent, and remembers the state it expects after each of them.
type roomKit struct {
	t      *testing.T
	db     *DB
	ctx    context.Context
	id     string
	nid    int64
	seq    int
	depth  int64
	state  map[StateKey]int64 // the room's current state as the kit expects it
	ids    map[string]int64   // event ID to NID
	origin int64              // origin_server_ts of the next event
}

func newRoomKit(t *testing.T, db *DB, roomID string) *roomKit {
	t.Helper()
	k := &roomKit{t: t, db: db, ctx: context.Background(), id: roomID, state: map[StateKey]int64{}, ids: map[string]int64{},
		origin: 1_000}
	mustWrite(t, db, func(tx *Tx) (err error) {
		k.nid, err = tx.InsertRoom(k.ctx, roomID, "11", 1)
		return err
	})
	return k
}

// event builds the next event of the room (depth one more than the last).
func (k *roomKit) event(typ string, stateKey *string, sender string, content any) NewEvent {
	k.seq++
	k.depth++
	k.origin += 10
	id := fmt.Sprintf("$%s-%d", k.id[1:], k.seq)
	ev := map[string]any{"event_id": id, "room_id": k.id, "type": typ, "sender": sender, "content": content,
		"depth": k.depth, "origin_server_ts": k.origin}
	if stateKey != nil {
		ev["state_key"] = *stateKey
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		k.t.Fatal(err)
	}
	return NewEvent{RoomNID: k.nid, EventID: id, Type: typ, StateKey: stateKey, Sender: sender, Depth: k.depth,
		OriginTS: k.origin, JSON: raw}
}

// store runs one StoreEvent in its own write.
func (k *roomKit) store(w EventWrite) StoredEvent {
	k.t.Helper()
	out, err := k.tryStore(w)
	if err != nil {
		k.t.Fatalf("storing %s %s: %v", w.Event.Type, w.Event.EventID, err)
	}
	return out
}

func (k *roomKit) tryStore(w EventWrite) (StoredEvent, error) {
	if w.RoomID == "" {
		w.RoomID = k.id
	}
	var out StoredEvent
	err := k.db.Write(k.ctx, func(tx *Tx) (err error) {
		out, err = tx.StoreEvent(k.ctx, w)
		return err
	})
	if err == nil {
		k.ids[w.Event.EventID] = out.NID
	}
	return out, err
}

// setState stores a state event at the timeline's end, extending the
// current state.
func (k *roomKit) setState(typ, stateKey, sender string, content any) (NewEvent, StoredEvent) {
	k.t.Helper()
	e := k.event(typ, &stateKey, sender, content)
	out := k.store(EventWrite{Event: e, Placement: Timeline, Extends: true})
	k.state[StateKey{typ, stateKey}] = out.NID
	return e, out
}

func (k *roomKit) member(user, membership string) (NewEvent, StoredEvent) {
	k.t.Helper()
	return k.setState("m.room.member", user, user, map[string]any{"membership": membership})
}

func (k *roomKit) message(sender, body string) (NewEvent, StoredEvent) {
	k.t.Helper()
	e := k.event("m.room.message", nil, sender, map[string]any{"msgtype": "m.text", "body": body})
	return e, k.store(EventWrite{Event: e, Placement: Timeline})
}

// create sets up a room: create event, creator joined, join rules and
// history visibility.
func (k *roomKit) create(creator, joinRule, visibility string) {
	k.t.Helper()
	k.setState("m.room.create", "", creator, map[string]any{"room_version": "11"})
	k.member(creator, "join")
	k.setState("m.room.join_rules", "", creator, map[string]any{"join_rule": joinRule})
	k.setState("m.room.history_visibility", "", creator, map[string]any{"history_visibility": visibility})
}

// wantState checks that a snapshot holds exactly the expected state.
func (k *roomKit) wantSnapshot(what string, snapshot int64, want map[StateKey]int64) {
	k.t.Helper()
	got, err := k.db.Snapshot(k.ctx, snapshot)
	if err != nil {
		k.t.Fatalf("%s: reading snapshot %d: %v", what, snapshot, err)
	}
	if !maps.Equal(got, want) {
		k.t.Fatalf("%s: snapshot %d = %v, want %v", what, snapshot, got, want)
	}
}

// wantCurrent checks the room's snapshot and its current_state rows
// against the kit's expected state.
func (k *roomKit) wantCurrent(what string) {
	k.t.Helper()
	room, err := k.db.Room(k.ctx, k.id)
	if err != nil {
		k.t.Fatal(err)
	}
	k.wantSnapshot(what+" (room snapshot)", room.Snapshot, k.state)
	rows, err := k.db.q().QueryContext(k.ctx, `SELECT type, state_key, event_nid FROM current_state WHERE room_nid = $1`, k.nid)
	if err != nil {
		k.t.Fatal(err)
	}
	defer rows.Close()
	got := map[StateKey]int64{}
	for rows.Next() {
		var key StateKey
		var nid int64
		if err := rows.Scan(&key.Type, &key.StateKey, &nid); err != nil {
			k.t.Fatal(err)
		}
		got[key] = nid
	}
	if !maps.Equal(got, k.state) {
		k.t.Fatalf("%s: current_state = %v, want %v", what, got, k.state)
	}
}

// row reads the stored columns of an event that the APIs do not return.
type eventRow struct {
	StreamPos    *int64
	StateBefore  int64
	CurrentAfter int64
	Status       int
	StateValue   *string
	Redacts      *string
}

func (k *roomKit) row(eventID string) eventRow {
	k.t.Helper()
	var r eventRow
	err := k.db.q().QueryRowContext(k.ctx, `SELECT stream_pos, state_before, current_after, status, state_value, redacts
		FROM events WHERE event_id = $1`, eventID).Scan(&r.StreamPos, &r.StateBefore, &r.CurrentAfter, &r.Status, &r.StateValue, &r.Redacts)
	if err != nil {
		k.t.Fatalf("reading event %s: %v", eventID, err)
	}
	return r
}

// snapshotShape is a snapshot's parent and delta-chain length.
func (k *roomKit) snapshotShape(snapshot int64) (parent int64, chain int) {
	k.t.Helper()
	if err := k.db.q().QueryRowContext(k.ctx, `SELECT parent_nid, chain_len FROM state_snapshots WHERE snapshot_nid = $1`, snapshot).
		Scan(&parent, &chain); err != nil {
		k.t.Fatalf("reading snapshot %d: %v", snapshot, err)
	}
	return parent, chain
}

func clone(m map[StateKey]int64) map[StateKey]int64 { return maps.Clone(m) }
