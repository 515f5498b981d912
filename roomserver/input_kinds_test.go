package roomserver

import (
	"errors"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Input is idempotent: an event already stored answers its stored outcome,
// one repeated inside a batch is processed once, and neither is written
// again.
func TestInputRepeatsAreAnsweredNotRewritten(t *testing.T) {
	f := buildRoom(t, "11")
	d := f.d
	msg := text(d, f.c, f.bob, "once", f.head)
	res, err := f.rs.Input(t.Context(), []InputEvent{{Kind: KindNew, Event: msg}, {Kind: KindNew, Event: msg}})
	if err != nil || res[0].Status != StatusAccepted || res[1].Status != StatusAccepted || res[0].StreamPos <= 0 {
		t.Fatalf("an event twice in one batch: %+v, %v", res, err)
	}
	pos := f.db.StreamPosition()
	again := inputOne(t, f.rs, InputEvent{Kind: KindNew, Event: msg})
	if again.Err != nil || again.Status != StatusAccepted || again.StreamPos != res[0].StreamPos || f.db.StreamPosition() != pos {
		t.Fatalf("an accepted event again: %+v (stream %d -> %d)", again, pos, f.db.StreamPosition())
	}
	// An accepted event offered as an outlier stays what it is.
	if o := inputOne(t, f.rs, InputEvent{Kind: KindOutlier, Event: msg}); o.Status != StatusAccepted || o.Err != nil {
		t.Fatalf("an accepted event as an outlier: %+v", o)
	}
	badPL := d.event(f.c, f.bob, spec.MRoomPowerLevels, sk(""), map[string]any{"users": map[string]int{f.bob: 100}}, d.after(msg), msg)
	mustInput(t, f.rs, badPL, StatusRejected)
	if r := inputOne(t, f.rs, InputEvent{Kind: KindNew, Event: badPL}); r.Status != StatusRejected {
		t.Fatalf("a rejected event again: %+v", r)
	}
}

// What Input cannot place it reports per event: an unknown room (without
// its create event), prev events not held, prev events held without state
// (outliers: the state must be fetched), trusted state naming events not
// held.
func TestInputReportsWhatIsMissing(t *testing.T) {
	f := buildRoom(t, "11")
	d := f.d
	other := newDAG(t, "11")
	other.roomID = "!other:b.test"
	otherCreate := other.event(f.b, f.alice, spec.MRoomCreate, sk(""), map[string]any{"room_version": "11"}, stateMap{})
	otherJoin := other.event(f.b, f.alice, spec.MRoomMember, sk(f.alice), map[string]any{"membership": "join"}, other.after(otherCreate), otherCreate)
	if r := inputOne(t, f.rs, InputEvent{Kind: KindNew, Event: otherJoin}); !errors.Is(r.Err, ErrRoomNotFound) {
		t.Fatalf("an event of an unknown room: %+v", r)
	}

	gap := text(d, f.c, f.bob, "gap", f.head)
	after := text(d, f.c, f.bob, "after the gap", gap)
	var mp *MissingPrevEventsError
	if r := inputOne(t, f.rs, InputEvent{Kind: KindNew, Event: after}); !errors.As(r.Err, &mp) || mp.Missing[0] != gap.EventID() ||
		!strings.Contains(mp.Error(), gap.EventID()) {
		t.Fatalf("an event after a gap: %+v", r)
	}
	if r := inputOne(t, f.rs, InputEvent{Kind: KindOutlier, Event: gap}); r.Status != StatusOutlier {
		t.Fatalf("the gap as an outlier: %+v", r)
	}
	var ms *MissingStateError
	if r := inputOne(t, f.rs, InputEvent{Kind: KindNew, Event: after}); !errors.As(r.Err, &ms) || ms.Events[0] != gap.EventID() ||
		!strings.Contains(ms.Error(), gap.EventID()) {
		t.Fatalf("an event after an outlier: %+v", r)
	}
	ids := []string{"$never-seen"}
	for _, ev := range d.beforeOf[after.EventID()] {
		ids = append(ids, ev.EventID())
	}
	if r := inputOne(t, f.rs, InputEvent{Kind: KindNew, Event: after, StateBefore: ids}); !errors.As(r.Err, &ms) || ms.Events[0] != "$never-seen" {
		t.Fatalf("trusted state naming an unknown event: %+v", r)
	}
	// With the state trusted, it goes in.
	if r := inputOne(t, f.rs, InputEvent{Kind: KindNew, Event: after, StateBefore: ids[1:]}); r.Err != nil || r.Status != StatusAccepted {
		t.Fatalf("with the trusted state: %+v", r)
	}
	var ma *MissingAuthEventsError
	eve := "@eve:c.test"
	eveJoin := d.event(f.c, eve, spec.MRoomMember, sk(eve), map[string]any{"membership": "join"}, d.after(after), after)
	if r := inputOne(t, f.rs, InputEvent{Kind: KindNew, Event: text(d, f.c, eve, "x", eveJoin)}); !errors.As(r.Err, &ma) || !strings.Contains(ma.Error(), eveJoin.EventID()) {
		t.Fatalf("an event with an auth event missing: %+v", r)
	}
}

func TestEventStatusNames(t *testing.T) {
	for s, want := range map[EventStatus]string{StatusAccepted: "accepted", StatusOutlier: "outlier", StatusRejected: "rejected",
		StatusSoftFailed: "soft-failed", EventStatus(9): "status(9)"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(s), s.String(), want)
		}
	}
	for err, want := range map[error]string{
		&ForbiddenError{Reason: "r"}:  "forbidden: r",
		&BadRequestError{Reason: "b"}: "bad request: b",
	} {
		if err.Error() != want {
			t.Errorf("%T.Error() = %q", err, err.Error())
		}
	}
}
