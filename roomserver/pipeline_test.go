package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// fakeFetcher answers fetches from the events a dag built, as the other
// servers of a room would; it counts the requests of each kind.
type fakeFetcher struct {
	d     *dag
	calls map[string]int
	// stateAt lists the events /state_ids was asked about, in order.
	stateAt []string
}

func newFakeFetcher(d *dag) *fakeFetcher { return &fakeFetcher{d: d, calls: map[string]int{}} }

func (f *fakeFetcher) Event(_ context.Context, _ spec.ServerName, _, id string) (json.RawMessage, error) {
	f.calls["event"]++
	ev, ok := f.d.events[id]
	if !ok {
		return nil, errors.New("no such event")
	}
	return ev.JSON(), nil
}

func (f *fakeFetcher) chain(id string) []string {
	seen := map[string]bool{}
	queue := append([]string(nil), f.d.events[id].AuthEventIDs()...)
	for len(queue) > 0 {
		x := queue[0]
		queue = queue[1:]
		if seen[x] {
			continue
		}
		seen[x] = true
		queue = append(queue, f.d.events[x].AuthEventIDs()...)
	}
	var out []string
	for x := range seen {
		out = append(out, x)
	}
	sort.Strings(out)
	return out
}

func (f *fakeFetcher) EventAuth(_ context.Context, _ spec.ServerName, _, id string) ([]json.RawMessage, error) {
	f.calls["event_auth"]++
	var out []json.RawMessage
	for _, x := range f.chain(id) {
		out = append(out, f.d.events[x].JSON())
	}
	return out, nil
}

func (f *fakeFetcher) MissingEvents(_ context.Context, _ spec.ServerName, _ string, earliest, latest []string, limit int) ([]json.RawMessage, error) {
	f.calls["missing"]++
	stop := map[string]bool{}
	for _, id := range earliest {
		stop[id] = true
	}
	var out []json.RawMessage
	seen := map[string]bool{}
	queue := []string{}
	for _, id := range latest {
		queue = append(queue, f.d.events[id].PrevEventIDs()...)
	}
	for len(queue) > 0 && len(out) < limit {
		x := queue[0]
		queue = queue[1:]
		if seen[x] || stop[x] {
			continue
		}
		seen[x] = true
		out = append(out, f.d.events[x].JSON())
		queue = append(queue, f.d.events[x].PrevEventIDs()...)
	}
	return out, nil
}

func (f *fakeFetcher) StateIDs(_ context.Context, _ spec.ServerName, _, id string) ([]string, []string, error) {
	f.calls["state_ids"]++
	f.stateAt = append(f.stateAt, id)
	var state []string
	chain := map[string]bool{}
	for _, ev := range f.d.beforeOf[id] {
		state = append(state, ev.EventID())
		for _, x := range f.chain(ev.EventID()) {
			chain[x] = true
		}
	}
	var auth []string
	for x := range chain {
		auth = append(auth, x)
	}
	sort.Strings(state)
	sort.Strings(auth)
	return state, auth, nil
}

func text(d *dag, srv *fakeServer, sender, body string, prev ...gomatrixserverlib.PDU) gomatrixserverlib.PDU {
	return d.event(srv, sender, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": body}, d.after(prev[0]), prev...)
}

// An event held as an outlier (fetched as auth or state) becomes a timeline
// event when it arrives as a new event: it gets a stream position and
// becomes the forward extremity.
func TestOutlierPromotedWhenItArrivesInTheTimeline(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "11")
	topic := f.d.event(f.c, f.bob, spec.MRoomTopic, sk(""), map[string]any{"topic": "t"}, f.d.after(f.head), f.head)
	if res := inputOne(t, f.rs, InputEvent{Kind: KindOutlier, Event: topic}); res.Err != nil || res.Status != StatusOutlier {
		t.Fatalf("outlier input: %+v", res)
	}
	stored, err := f.db.EventByID(ctx, topic.EventID())
	if err != nil || stored.Status != storage.EventOutlier || stored.StreamPos != 0 {
		t.Fatalf("stored outlier = %+v, %v", stored, err)
	}
	res := mustInput(t, f.rs, topic, StatusAccepted)
	if res.StreamPos <= 0 {
		t.Fatalf("promoted event has stream position %d", res.StreamPos)
	}
	stored, err = f.db.EventByID(ctx, topic.EventID())
	if err != nil || stored.Status != storage.EventAccepted || stored.StreamPos != res.StreamPos {
		t.Fatalf("promoted event = %+v, %v", stored, err)
	}
	info, _ := f.db.Room(ctx, f.d.roomID)
	if len(info.Extremities) != 1 || info.Extremities[0] != topic.EventID() {
		t.Fatalf("extremities = %v, want the promoted event", info.Extremities)
	}
	cur, err := f.db.CurrentStateEvents(ctx, info.NID, spec.MRoomTopic)
	if err != nil || len(cur) != 1 || cur[0].EventID != topic.EventID() {
		t.Fatalf("current topic = %+v, %v", cur, err)
	}
}

// Missing auth events are reported as such; an event whose auth event was
// rejected is rejected, not reported missing (refetching would not help).
func TestAuthEventsMissingOrRejected(t *testing.T) {
	f := buildRoom(t, "11")
	d := f.d
	eve := "@eve:c.test"
	// Eve's join is never input: her message's auth event is missing.
	eveJoin := d.event(f.c, eve, spec.MRoomMember, sk(eve), map[string]any{"membership": "join"}, d.after(f.head), f.head)
	msg := text(d, f.c, eve, "hi", eveJoin)
	var ma *MissingAuthEventsError
	if err := inputOne(t, f.rs, InputEvent{Kind: KindNew, Event: msg}).Err; !errors.As(err, &ma) || ma.Missing[0] != eveJoin.EventID() {
		t.Fatalf("err = %v, want missing auth %s", err, eveJoin.EventID())
	}
	// Bob (power 50) sets power levels: rejected (state_default 50 but PL
	// changes need 100 for the users he raises).
	badPL := d.event(f.c, f.bob, spec.MRoomPowerLevels, sk(""), map[string]any{"users": map[string]int{f.bob: 100, f.alice: 100}}, d.after(f.head), f.head)
	mustInput(t, f.rs, badPL, StatusRejected)
	// An event citing the rejected one as an auth event is rejected.
	after := cloneState(d.after(f.head))
	after[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomPowerLevels}] = badPL
	topic := d.event(f.c, f.bob, spec.MRoomTopic, sk(""), map[string]any{"topic": "x"}, after, f.head)
	res := inputOne(t, f.rs, InputEvent{Kind: KindNew, Event: topic})
	if res.Err != nil || res.Status != StatusRejected {
		t.Fatalf("event on a rejected auth event: %+v", res)
	}
}

// Redactions from other servers apply only when their sender is of the
// target's server or holds the redact power; one stored before its target
// applies when the target arrives.
func TestRemoteRedactionsAreChecked(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "11")
	d := f.d
	x := newFakeServer(t, "x.test")
	mallory := "@mallory:x.test"
	mJoin := d.event(x, mallory, spec.MRoomMember, sk(mallory), map[string]any{"membership": "join"}, d.after(f.head), f.head)
	mustInput(t, f.rs, mJoin, StatusAccepted)
	aliceMsg := text(d, f.b, f.alice, "alice's words", mJoin)
	mustInput(t, f.rs, aliceMsg, StatusAccepted)

	redact := func(srv *fakeServer, sender string, target gomatrixserverlib.PDU, prev gomatrixserverlib.PDU) gomatrixserverlib.PDU {
		// From v11 the target sits in the content too.
		content := map[string]any{"redacts": target.EventID()}
		return d.eventRedacting(srv, sender, target.EventID(), content, d.after(prev), prev)
	}
	redacted := func(id string) bool {
		e, err := f.db.EventByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return e.RedactedBy != ""
	}
	// Mallory (x.test, power 0) redacts alice's message: accepted as an
	// event (the auth rules allow any redaction from v3), never applied.
	bad := redact(x, mallory, aliceMsg, aliceMsg)
	mustInput(t, f.rs, bad, StatusAccepted)
	if redacted(aliceMsg.EventID()) {
		t.Fatal("a user of another server without redact power redacted alice's message")
	}
	// Bob (c.test, power 50 = redact) may redact alice's message.
	good := redact(f.c, f.bob, aliceMsg, bad)
	mustInput(t, f.rs, good, StatusAccepted)
	if !redacted(aliceMsg.EventID()) {
		t.Fatal("a redaction by a user with redact power was not applied")
	}
	// A redaction that arrives before its target applies when it comes:
	// mallory redacts her own message (same server).
	mMsg := text(d, x, mallory, "oops", good)
	early := redact(x, mallory, mMsg, good)
	mustInput(t, f.rs, early, StatusAccepted)
	if res := inputOne(t, f.rs, InputEvent{Kind: KindOutlier, Event: mMsg}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if !redacted(mMsg.EventID()) {
		t.Fatal("a redaction stored before its target did not apply when the target arrived")
	}
}

// Backfilled history takes negative stream positions, and changes neither
// the forward extremities nor the current state; a late event (already
// named as a prev event) is placed the same way.
func TestBackfillKeepsTheHeadAndTheStream(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "11")
	d := f.d
	old := text(d, f.c, f.bob, "old", f.head)
	topicOld := d.event(f.c, f.bob, spec.MRoomTopic, sk(""), map[string]any{"topic": "historical"}, d.after(old), old)
	now := text(d, f.b, f.alice, "now", topicOld)
	// The room learns of "now" first, with the state before it trusted.
	for _, ev := range []gomatrixserverlib.PDU{old, topicOld} {
		if res := inputOne(t, f.rs, InputEvent{Kind: KindOutlier, Event: ev}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	var ids []string
	for _, ev := range d.beforeOf[now.EventID()] {
		ids = append(ids, ev.EventID())
	}
	if res := inputOne(t, f.rs, InputEvent{Kind: KindNew, Event: now, StateBefore: ids}); res.Err != nil || res.Status != StatusAccepted {
		t.Fatalf("new event with trusted state: %+v", res)
	}
	info, _ := f.db.Room(ctx, d.roomID)
	posBefore := f.db.StreamPosition()
	// topicOld arrives again as backfill (with the state before it, as the
	// fetcher gets it): promoted, with a negative position.
	var oldIDs []string
	for _, ev := range d.beforeOf[topicOld.EventID()] {
		oldIDs = append(oldIDs, ev.EventID())
	}
	res := inputOne(t, f.rs, InputEvent{Kind: KindBackfill, Event: topicOld, StateBefore: oldIDs})
	if res.Err != nil || res.Status != StatusAccepted || res.StreamPos >= 0 {
		t.Fatalf("backfilled event: %+v", res)
	}
	// old arrives as a new event, but "topicOld" names it: a late event.
	res = inputOne(t, f.rs, InputEvent{Kind: KindNew, Event: old})
	if res.Err != nil || res.Status != StatusAccepted || res.StreamPos >= 0 {
		t.Fatalf("late event: %+v", res)
	}
	if f.db.StreamPosition() != posBefore {
		t.Fatalf("backfill moved the sync stream from %d to %d", posBefore, f.db.StreamPosition())
	}
	after, _ := f.db.Room(ctx, d.roomID)
	if !slices.Equal(after.Extremities, info.Extremities) || after.Snapshot != info.Snapshot || !slices.Contains(after.Extremities, now.EventID()) {
		t.Fatalf("head moved: %+v -> %+v", info, after)
	}
}

// InputFetching closes gaps: a short one with /get_missing_events, a long
// one (or one into history the origin will not send) with /state_ids.
func TestInputFetchingFillsGaps(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "11")
	d := f.d
	prev := f.head
	var chain []gomatrixserverlib.PDU
	for i := 0; i < 5; i++ {
		prev = text(d, f.c, f.bob, "gap", prev)
		chain = append(chain, prev)
	}
	last := chain[len(chain)-1]
	fetch := newFakeFetcher(d)
	res, err := f.rs.InputFetching(ctx, fetch, []InputEvent{{Kind: KindNew, Event: last, Origin: "c.test"}})
	if err != nil || res[0].Err != nil || res[0].Status != StatusAccepted {
		t.Fatalf("short gap: %+v, %v", res, err)
	}
	if fetch.calls["missing"] != 1 || fetch.calls["state_ids"] != 0 {
		t.Fatalf("short gap fetched with %v", fetch.calls)
	}
	for _, ev := range chain {
		e, err := f.db.EventByID(ctx, ev.EventID())
		if err != nil || e.StreamPos <= 0 {
			t.Fatalf("gap event %s = %+v, %v", ev.EventID(), e, err)
		}
	}
	// A long gap with a state change in it: more than one request of
	// missing events can fill, so the state before the event is fetched.
	for i := 0; i < missingEventsLimit+5; i++ {
		prev = text(d, f.c, f.bob, "long gap", prev)
	}
	topic := d.event(f.c, f.bob, spec.MRoomTopic, sk(""), map[string]any{"topic": "after the gap"}, d.after(prev), prev)
	end := text(d, f.c, f.bob, "end", topic)
	fetch = newFakeFetcher(d)
	res, err = f.rs.InputFetching(ctx, fetch, []InputEvent{{Kind: KindNew, Event: end, Origin: "c.test"}})
	if err != nil || res[0].Err != nil || res[0].Status != StatusAccepted {
		t.Fatalf("long gap: %+v, %v", res, err)
	}
	if fetch.calls["state_ids"] == 0 {
		t.Fatalf("long gap filled without /state_ids: %v", fetch.calls)
	}
	info, _ := f.db.Room(ctx, d.roomID)
	cur, err := f.db.CurrentStateEvents(ctx, info.NID, spec.MRoomTopic)
	if err != nil || len(cur) != 1 || cur[0].EventID != topic.EventID() {
		t.Fatalf("current topic after the gap = %+v, %v", cur, err)
	}
}

// A room joined late (its history before the join unknown), then
// backfilled: the backfilled events page in DAG order before the join
// (topological order), take negative stream positions (so /sync, which
// reads positive positions after its token, never sees them), and move
// neither the forward extremities nor the current state.
func TestBackfilledHistoryPagesInDAGOrder(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "11")
	d := f.d
	// History the local server has not seen: five messages after bob's
	// join, then carol (of this server) joins and says hello.
	prev := f.head
	var history []gomatrixserverlib.PDU
	for i := 0; i < 5; i++ {
		prev = text(d, f.c, f.bob, "old", prev)
		history = append(history, prev)
	}
	carol := "@carol:a.test"
	local := &fakeServer{name: "a.test", keyID: f.b.keyID, key: f.b.key}
	carolJoin := d.event(local, carol, spec.MRoomMember, sk(carol), map[string]any{"membership": "join"}, d.after(prev), prev)
	hello := text(d, local, carol, "hello", carolJoin)

	// A fresh server joins: the state before carol's join is trusted.
	rs, db := openRoomserver(t)
	var stateIDs []string
	var outliers []InputEvent
	for _, ev := range authOrder(stateEvents(d.beforeOf[carolJoin.EventID()])) {
		stateIDs = append(stateIDs, ev.EventID())
		outliers = append(outliers, InputEvent{Kind: KindOutlier, Event: ev})
	}
	mustAll(t, rs, outliers...)
	mustAll(t, rs, InputEvent{Kind: KindNew, Event: carolJoin, StateBefore: stateIDs}, InputEvent{Kind: KindNew, Event: hello})
	info, _ := db.Room(ctx, d.roomID)
	pos := db.StreamPosition()

	// Backfill, oldest first, the first with the state before it.
	var beforeFirst []string
	for _, ev := range d.beforeOf[history[0].EventID()] {
		beforeFirst = append(beforeFirst, ev.EventID())
	}
	var backfill []InputEvent
	for i, ev := range history {
		in := InputEvent{Kind: KindBackfill, Event: ev}
		if i == 0 {
			in.StateBefore = beforeFirst
		}
		backfill = append(backfill, in)
	}
	res := mustAll(t, rs, backfill...)
	for _, r := range res {
		if r.StreamPos >= 0 {
			t.Fatalf("backfilled %s got stream position %d", r.EventID, r.StreamPos)
		}
	}
	if db.StreamPosition() != pos {
		t.Fatalf("backfill moved the stream from %d to %d", pos, db.StreamPosition())
	}
	after, _ := db.Room(ctx, d.roomID)
	if !slices.Equal(after.Extremities, info.Extremities) || after.Snapshot != info.Snapshot {
		t.Fatalf("backfill moved the head: %+v -> %+v", info, after)
	}
	page, err := db.TopoTimeline(ctx, info.NID, storage.TopoEnd, storage.TopoPos{}, true, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range page {
		got = append(got, e.EventID)
	}
	want := []string{hello.EventID(), carolJoin.EventID()}
	for i := len(history) - 1; i >= 0; i-- {
		want = append(want, history[i].EventID())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("history, newest first = %v\nwant %v", got, want)
	}
}

func stateEvents(st stateMap) []gomatrixserverlib.PDU {
	out := make([]gomatrixserverlib.PDU, 0, len(st))
	for _, ev := range st {
		out = append(out, ev)
	}
	return out
}

// mustAll inputs events and fails on any error or refusal.
func mustAll(t *testing.T, rs *Roomserver, in ...InputEvent) []InputResult {
	t.Helper()
	res, err := rs.Input(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil || (r.Status != StatusAccepted && r.Status != StatusOutlier) {
			t.Fatalf("input %s: %+v", r.EventID, r)
		}
	}
	return res
}
