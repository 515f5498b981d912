package fedinbound

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/tests/fedtest"
)

const fedV1 = "/_matrix/federation/v1"

// served is an event as another server served it.
type served struct {
	EventID string
	Type    string
	Content map[string]any
	ts      int64
}

// parseServed parses served events with the room's version, checking they
// are real events (hashes may mismatch for redacted ones: parsing redacts).
func parseServed(t testing.TB, raws []json.RawMessage) []served {
	t.Helper()
	ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV11)
	out := make([]served, len(raws))
	for i, raw := range raws {
		pdu, err := ver.NewEventFromUntrustedJSON(raw)
		if err != nil {
			t.Fatalf("served event %s: %v", raw, err)
		}
		var content map[string]any
		json.Unmarshal(pdu.Content(), &content)
		out[i] = served{EventID: pdu.EventID(), Type: pdu.Type(), Content: content, ts: int64(pdu.OriginServerTS())}
	}
	return out
}

func servedIDs(events []served) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.EventID
	}
	return out
}

type txnShape struct {
	Origin string            `json:"origin"`
	PDUs   []json.RawMessage `json:"pdus"`
}

// TestHistoryEndpoints: hs1 serves its room's history to hs2 (in the
// room): /backfill, /get_missing_events, /state, /state_ids, /event,
// /event_auth, /timestamp_to_event; bad parameters are 400, unknown
// events 404, and hs3 (not in the room) is refused everything.
func TestHistoryEndpoints(t *testing.T) {
	s := newShared(t, nil)
	hs3 := s.n.Start("hs3")
	var msgs []string
	for i := 1; i <= 3; i++ {
		msgs = append(msgs, s.alice.Send(t, s.roomID, fmt.Sprintf("m%d", i)))
	}
	room := url.PathEscape(s.roomID)

	var bf txnShape
	if status, raw := fedGet(t, s.hs2, "hs1", fedV1+"/backfill/"+room+"?v="+url.QueryEscape(msgs[2])+"&limit=3", &bf); status != 200 {
		t.Fatalf("backfill: %d %s", status, raw)
	}
	if got := servedIDs(parseServed(t, bf.PDUs)); bf.Origin != "hs1" || !slices.Equal(got, []string{msgs[2], msgs[1], msgs[0]}) {
		t.Fatalf("backfill from m3, 3 events: origin %s, %v, want %v", bf.Origin, got, []string{msgs[2], msgs[1], msgs[0]})
	}
	if status, _ := fedGet(t, s.hs2, "hs1", fedV1+"/backfill/"+room+"?v="+url.QueryEscape(msgs[2])+"&limit=100000", &bf); status != 200 {
		t.Fatal("backfill with a big limit")
	}
	all := timeline(t, s.hs1, s.roomID)
	if len(bf.PDUs) != len(all) {
		t.Fatalf("whole backfill: %d events, room has %d", len(bf.PDUs), len(all))
	}
	for path, want := range map[string]string{
		"/backfill/" + room + "?limit=3":                                      "M_MISSING_PARAM",
		"/backfill/" + room + "?v=" + url.QueryEscape(msgs[0]) + "&limit=-1":  "M_INVALID_PARAM",
		"/backfill/" + room + "?v=" + url.QueryEscape(msgs[0]) + "&limit=ten": "M_INVALID_PARAM",
		"/state_ids/" + room:                          "M_MISSING_PARAM",
		"/timestamp_to_event/" + room + "?ts=1":       "M_INVALID_PARAM",
		"/timestamp_to_event/" + room + "?ts=x&dir=f": "M_INVALID_PARAM",
		"/backfill/not-a-room?v=x&limit=1":            "M_INVALID_PARAM",
	} {
		if status, raw := fedGet(t, s.hs2, "hs1", fedV1+path, nil); status != 400 || errcode(raw) != want {
			t.Errorf("%s: %d %s, want 400 %s", path, status, raw, want)
		}
	}

	// Missing events between bob's join and m3: m1, m2, oldest first.
	var missing struct {
		Events []json.RawMessage `json:"events"`
	}
	body := map[string]any{"earliest_events": []string{s.bobJoin.EventID()}, "latest_events": []string{msgs[2]}, "limit": 10, "min_depth": 0}
	if status, raw := fedDo(t, s.hs2, "POST", "hs1", fedV1+"/get_missing_events/"+room, body, &missing); status != 200 {
		t.Fatalf("get_missing_events: %d %s", status, raw)
	}
	if got := servedIDs(parseServed(t, missing.Events)); !slices.Equal(got, msgs[:2]) {
		t.Fatalf("missing events = %v, want %v", got, msgs[:2])
	}
	for _, bad := range []any{map[string]any{"latest_events": []string{msgs[2]}}, map[string]any{"earliest_events": "x", "latest_events": []string{}}} {
		if status, raw := fedDo(t, s.hs2, "POST", "hs1", fedV1+"/get_missing_events/"+room, bad, nil); status != 400 || errcode(raw) != "M_BAD_JSON" {
			t.Errorf("get_missing_events %v: %d %s", bad, status, raw)
		}
	}

	// The state before bob's join, and its auth chain.
	var ids struct {
		PDUIDs       []string `json:"pdu_ids"`
		AuthChainIDs []string `json:"auth_chain_ids"`
	}
	if status, raw := fedGet(t, s.hs2, "hs1", fedV1+"/state_ids/"+room+"?event_id="+url.QueryEscape(s.bobJoin.EventID()), &ids); status != 200 {
		t.Fatalf("state_ids: %d %s", status, raw)
	}
	create := s.hs1.StateID(t, s.roomID, spec.MRoomCreate, "")
	if slices.Contains(ids.PDUIDs, s.bobJoin.EventID()) || !slices.Contains(ids.PDUIDs, create) ||
		!slices.Contains(ids.PDUIDs, s.hs1.StateID(t, s.roomID, spec.MRoomMember, s.alice.ID)) || !slices.Contains(ids.AuthChainIDs, create) {
		t.Fatalf("state_ids before bob's join: %+v", ids)
	}
	var st struct {
		PDUs      []json.RawMessage `json:"pdus"`
		AuthChain []json.RawMessage `json:"auth_chain"`
	}
	if status, raw := fedGet(t, s.hs2, "hs1", fedV1+"/state/"+room+"?event_id="+url.QueryEscape(s.bobJoin.EventID()), &st); status != 200 {
		t.Fatalf("state: %d %s", status, raw)
	}
	if got := servedIDs(parseServed(t, st.PDUs)); !sameSet(got, ids.PDUIDs) || len(st.AuthChain) != len(ids.AuthChainIDs) {
		t.Fatalf("state = %v, want %v", got, ids.PDUIDs)
	}

	// One event, and its auth chain.
	var ev txnShape
	if status, raw := fedGet(t, s.hs2, "hs1", fedV1+"/event/"+url.PathEscape(msgs[1]), &ev); status != 200 || len(ev.PDUs) != 1 {
		t.Fatalf("event: %d %s", status, raw)
	}
	if got := parseServed(t, ev.PDUs)[0]; got.EventID != msgs[1] || got.Content["body"] != "m2" {
		t.Fatalf("event: %+v", got)
	}
	var auth struct {
		AuthChain []json.RawMessage `json:"auth_chain"`
	}
	if status, raw := fedGet(t, s.hs2, "hs1", fedV1+"/event_auth/"+room+"/"+url.PathEscape(msgs[1]), &auth); status != 200 {
		t.Fatalf("event_auth: %d %s", status, raw)
	}
	chain := servedIDs(parseServed(t, auth.AuthChain))
	for _, id := range s.hs1.PDU(t, msgs[1]).AuthEventIDs() {
		if !slices.Contains(chain, id) {
			t.Fatalf("auth chain %v lacks auth event %s", chain, id)
		}
	}
	if slices.Contains(chain, msgs[1]) {
		t.Fatal("an event's auth chain holds the event")
	}

	// The event at a time.
	m2 := s.hs1.PDU(t, msgs[1])
	var near struct {
		EventID string `json:"event_id"`
		TS      int64  `json:"origin_server_ts"`
	}
	ts := int64(m2.OriginServerTS())
	if status, raw := fedGet(t, s.hs2, "hs1", fmt.Sprintf("%s/timestamp_to_event/%s?ts=%d&dir=f", fedV1, room, ts), &near); status != 200 || near.TS < ts {
		t.Fatalf("timestamp_to_event forwards: %d %s", status, raw)
	}
	if status, raw := fedGet(t, s.hs2, "hs1", fmt.Sprintf("%s/timestamp_to_event/%s?ts=%d&dir=b", fedV1, room, ts), &near); status != 200 || near.TS > ts {
		t.Fatalf("timestamp_to_event backwards: %d %s", status, raw)
	}
	if status, raw := fedGet(t, s.hs2, "hs1", fmt.Sprintf("%s/timestamp_to_event/%s?ts=1&dir=b", fedV1, room), nil); status != 404 || errcode(raw) != "M_NOT_FOUND" {
		t.Fatalf("timestamp_to_event before the room: %d %s", status, raw)
	}

	// Unknown events.
	for _, path := range []string{
		"/event/" + url.PathEscape("$nosuchevent"),
		"/state_ids/" + room + "?event_id=" + url.QueryEscape("$nosuchevent"),
		"/state/" + room + "?event_id=" + url.QueryEscape("$nosuchevent"),
		"/event_auth/" + room + "/" + url.PathEscape("$nosuchevent"),
	} {
		if status, raw := fedGet(t, s.hs2, "hs1", fedV1+path, nil); status != 404 || errcode(raw) != "M_NOT_FOUND" {
			t.Errorf("%s: %d %s, want 404", path, status, raw)
		}
	}

	// hs3 is in no room of hs1: refused everything, unknown rooms alike.
	for _, path := range []string{
		"/backfill/" + room + "?v=" + url.QueryEscape(msgs[2]) + "&limit=3",
		"/state_ids/" + room + "?event_id=" + url.QueryEscape(msgs[2]),
		"/state/" + room + "?event_id=" + url.QueryEscape(msgs[2]),
		"/event/" + url.PathEscape(msgs[2]),
		"/event_auth/" + room + "/" + url.PathEscape(msgs[2]),
		fmt.Sprintf("/timestamp_to_event/%s?ts=%d&dir=f", room, ts),
		"/backfill/" + url.PathEscape("!nosuchroom:hs1") + "?v=x&limit=3",
	} {
		if status, raw := fedGet(t, hs3, "hs1", fedV1+path, nil); status != 403 || errcode(raw) != "M_FORBIDDEN" {
			t.Errorf("hs3 %s: %d %s, want 403", path, status, raw)
		}
	}
	if status, raw := fedDo(t, hs3, "POST", "hs1", fedV1+"/get_missing_events/"+room, body, nil); status != 403 || errcode(raw) != "M_FORBIDDEN" {
		t.Errorf("hs3 get_missing_events: %d %s", status, raw)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestHistoryVisibilityForServers: in a room whose history is visible to
// joined members only, hs2 (joined late) gets what came before its user
// joined redacted, from every history endpoint, and the rest whole; in a
// world-readable room a server with no members may read the history.
func TestHistoryVisibilityForServers(t *testing.T) {
	n := newSharedLater(t)
	s := n.s
	room := url.PathEscape(s.roomID)
	var bf txnShape
	if status, raw := fedGet(t, s.hs2, "hs1", fedV1+"/backfill/"+room+"?v="+url.QueryEscape(n.after)+"&limit=20", &bf); status != 200 {
		t.Fatalf("backfill: %d %s", status, raw)
	}
	events := parseServed(t, bf.PDUs)
	byID := map[string]served{}
	for _, e := range events {
		byID[e.EventID] = e
	}
	for _, id := range n.secrets {
		e, ok := byID[id]
		if !ok || e.Content["body"] != nil {
			t.Fatalf("secret %s served as %+v", id, e)
		}
	}
	if byID[n.after].Content["body"] != "after the join" || byID[s.bobJoin.EventID()].Content["membership"] != "join" {
		t.Fatalf("events after the join: %+v, %+v", byID[n.after], byID[s.bobJoin.EventID()])
	}

	var missing struct {
		Events []json.RawMessage `json:"events"`
	}
	body := map[string]any{"earliest_events": []string{s.hs1.StateID(t, s.roomID, spec.MRoomCreate, "")}, "latest_events": []string{n.after}, "limit": 20}
	if status, raw := fedDo(t, s.hs2, "POST", "hs1", fedV1+"/get_missing_events/"+room, body, &missing); status != 200 {
		t.Fatalf("get_missing_events: %d %s", status, raw)
	}
	for _, e := range parseServed(t, missing.Events) {
		if slices.Contains(n.secrets, e.EventID) && e.Content["body"] != nil {
			t.Fatalf("get_missing_events served secret %s: %+v", e.EventID, e)
		}
	}
	var ev txnShape
	fedGet(t, s.hs2, "hs1", fedV1+"/event/"+url.PathEscape(n.secrets[0]), &ev)
	if len(ev.PDUs) != 1 || parseServed(t, ev.PDUs)[0].Content["body"] != nil {
		t.Fatalf("event served a secret: %s", ev.PDUs)
	}
	fedGet(t, s.hs2, "hs1", fedV1+"/event/"+url.PathEscape(n.after), &ev)
	if len(ev.PDUs) != 1 || parseServed(t, ev.PDUs)[0].Content["body"] != "after the join" {
		t.Fatalf("event after the join: %s", ev.PDUs)
	}
	// The first event at or after the first secret that hs2 may see is
	// the join.
	var near struct {
		EventID string `json:"event_id"`
	}
	ts := int64(s.hs1.PDU(t, n.secrets[0]).OriginServerTS())
	fedGet(t, s.hs2, "hs1", fmt.Sprintf("%s/timestamp_to_event/%s?ts=%d&dir=f", fedV1, room, ts), &near)
	if slices.Contains(n.secrets, near.EventID) || near.EventID == "" {
		t.Fatalf("timestamp_to_event gave %q", near.EventID)
	}

	// A world-readable room: hs3, with no members, may read it.
	hs3 := s.n.Start("hs3")
	open := s.alice.CreateRoom(t, map[string]any{"preset": "public_chat", "room_version": "11",
		"initial_state": []any{map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "world_readable"}}}})
	words := s.alice.Send(t, open, "for everyone")
	if status, raw := fedGet(t, hs3, "hs1", fedV1+"/backfill/"+url.PathEscape(open)+"?v="+url.QueryEscape(words)+"&limit=1", &bf); status != 200 ||
		len(bf.PDUs) != 1 || !strings.Contains(string(bf.PDUs[0]), "for everyone") {
		t.Fatalf("world-readable backfill for a server with no members: %d %s", status, raw)
	}
}

// laterShared is a room with "joined" history visibility that bob joined
// after alice said secrets.
type laterShared struct {
	s       *shared
	secrets []string
	after   string
}

func newSharedLater(t *testing.T) *laterShared {
	t.Helper()
	s := newPair(t)
	s.roomID = s.alice.CreateRoom(t, map[string]any{"preset": "public_chat", "room_version": "11"})
	s.alice.SetState(t, s.roomID, spec.MRoomHistoryVisibility, "", map[string]any{"history_visibility": "joined"})
	l := &laterShared{s: s}
	l.secrets = []string{s.alice.Send(t, s.roomID, "secret one"), s.alice.Send(t, s.roomID, "secret two")}
	s.bobJoin = joinFromHS2(t, s.hs1, s.hs2, s.roomID, s.bob)
	l.after = s.alice.Send(t, s.roomID, "after the join")
	return l
}

// TestTimestampToEventAsksOtherServers: hs2 joined alice's room late and
// holds none of its history; bob's /timestamp_to_event has hs2 ask hs1
// (forwards, the event hs2 found follows a gap; backwards, hs2 found
// nothing), backfill the event hs1 names, and answer with it, which
// /context then serves, and /messages pages back from (backfilling what
// lies behind it) (Complement's TestJumpToDateEndpoint/federation).
func TestTimestampToEventAsksOtherServers(t *testing.T) {
	s := newPair(t)
	s.roomID = s.alice.CreateRoom(t, map[string]any{"preset": "public_chat", "room_version": "11"})
	a0 := s.alice.Send(t, s.roomID, "a0")
	a0ts := int64(s.hs1.PDU(t, a0).OriginServerTS())
	for time.Now().UnixMilli() <= a0ts {
		runtime.Gosched() // a1 must come a millisecond later at least: lookups are by millisecond
	}
	a1 := s.alice.Send(t, s.roomID, "a1")
	a1ts := int64(s.hs1.PDU(t, a1).OriginServerTS())
	for time.Now().UnixMilli() <= a1ts {
		runtime.Gosched() // the join must come a millisecond later at least
	}
	joinLateFromHS2(t, s.hs1, s.hs2, s.roomID, s.bob)

	lookup := func(ts int64, dir string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("GET", s.hs2.URL()+"/_matrix/client/v1/rooms/"+url.PathEscape(s.roomID)+
			"/timestamp_to_event?ts="+strconv.FormatInt(ts, 10)+"&dir="+dir, nil)
		req.Header.Set("Authorization", "Bearer "+s.bob.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if status, out := lookup(a1ts-1, "f"); status != 200 || out["event_id"] != a1 || out["origin_server_ts"] != float64(a1ts) {
		t.Fatalf("forwards from before a1: %d %v (a1 %s)", status, out, a1)
	}
	if status, out := lookup(a1ts, "b"); status != 200 || out["event_id"] != a1 {
		t.Fatalf("backwards from a1: %d %v (a1 %s)", status, out, a1)
	}
	// /context of it, then /messages back from its start: hs2 backfills
	// what lies behind the event (a page that starts right before it).
	var ctxOut struct {
		Start string `json:"start"`
	}
	s.bob.MustDo(t, "GET", fedtest.RoomPath(s.roomID, "/context/"+url.PathEscape(a1)+"?limit=0"), nil, &ctxOut)
	var page struct {
		Chunk []fedtest.ClientEvent `json:"chunk"`
	}
	s.bob.MustDo(t, "GET", fedtest.RoomPath(s.roomID, "/messages?dir=b&limit=10&from="+url.QueryEscape(ctxOut.Start)), nil, &page)
	if got := fedtest.IDs(page.Chunk); !slices.Contains(got, a0) || slices.Contains(got, a1) {
		t.Fatalf("page back from before a1: %v, want a0 %s in it", got, a0)
	}
	// Nothing anywhere before the room: 404 still.
	if status, _ := lookup(1, "b"); status != 404 {
		t.Fatalf("backwards from 1970: %d", status)
	}
}
