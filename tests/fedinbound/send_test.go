package fedinbound

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
	"matrixhs/tests/fedtest"
)

// TestSendReachesSync: PDUs of a transaction from hs1 reach hs2's users
// through /sync, with their content, in order.
func TestSendReachesSync(t *testing.T) {
	s := newShared(t, nil)
	since := s.bob.Since(t)
	m1 := s.alice.Send(t, s.roomID, "hello hs2")
	m2 := s.alice.Send(t, s.roomID, "second")
	status, ans := fedtest.SendTxn(t, s.hs1, s.hs2.Name, "t1", s.fromHS1(t, m1, m2), nil)
	if status != 200 {
		t.Fatalf("send: %d %s", status, ans.Raw)
	}
	ans.OK(t, m1, m2)
	seen := s.bob.SyncUntil(t, since, s.roomID, m1, m2)
	if i1, i2 := slices.Index(fedtest.IDs(seen), m1), slices.Index(fedtest.IDs(seen), m2); i1 > i2 {
		t.Fatalf("out of order: %v", fedtest.IDs(seen))
	}
	for _, e := range seen {
		if e.EventID == m1 && !strings.Contains(string(e.Content), "hello hs2") {
			t.Fatalf("content of %s: %s", m1, e.Content)
		}
	}
}

// TestSendFillsGapWithMissingEvents: a PDU whose prev events hs2 lacks
// makes hs2 ask hs1 for them (/get_missing_events, served by hs1); all of
// them reach /sync in order, as new events.
func TestSendFillsGapWithMissingEvents(t *testing.T) {
	s := newShared(t, nil)
	since := s.bob.Since(t)
	var sent []string
	for i := 0; i < 4; i++ {
		sent = append(sent, s.alice.Send(t, s.roomID, fmt.Sprintf("message %d", i)))
	}
	last := sent[len(sent)-1]
	status, ans := fedtest.SendTxn(t, s.hs1, s.hs2.Name, "gap", s.fromHS1(t, last), nil)
	if status != 200 {
		t.Fatalf("send: %d %s", status, ans.Raw)
	}
	ans.OK(t, last)
	seen := fedtest.IDs(s.bob.SyncUntil(t, since, s.roomID, sent...))
	for i := 1; i < len(sent); i++ {
		if slices.Index(seen, sent[i-1]) > slices.Index(seen, sent[i]) {
			t.Fatalf("out of order: %v, want %v", seen, sent)
		}
	}
	for _, id := range sent {
		if e, err := s.hs2.DB.EventByID(context.Background(), id); err != nil || e.StreamPos <= 0 {
			t.Fatalf("gap event %s on hs2: %+v, %v", id, e, err)
		}
	}
}

// TestSendFillsLongGapWithState: a gap longer than one request of missing
// events is closed with the state hs1 gives (/state_ids, /state, /event):
// the new event is accepted, hs2 learns the state changed in the part of
// the gap it never fetched, and that part stays unknown.
func TestSendFillsLongGapWithState(t *testing.T) {
	s := newShared(t, nil)
	since := s.bob.Since(t)
	early := s.alice.Send(t, s.roomID, "early in the gap")
	topic := s.alice.SetState(t, s.roomID, "m.room.topic", "", map[string]any{"topic": "set in the gap"})
	for i := 0; i < 25; i++ {
		s.alice.Send(t, s.roomID, fmt.Sprintf("filler %d", i))
	}
	last := s.alice.Send(t, s.roomID, "after the gap")
	status, ans := fedtest.SendTxn(t, s.hs1, s.hs2.Name, "long-gap", s.fromHS1(t, last), nil)
	if status != 200 {
		t.Fatalf("send: %d %s", status, ans.Raw)
	}
	ans.OK(t, last)
	s.bob.SyncUntil(t, since, s.roomID, last)
	if s.hs2.Status(early) != -1 {
		t.Fatalf("hs2 fetched %s, beyond one request of missing events", early)
	}
	cur, err := s.hs2.DB.CurrentStateEvents(context.Background(), s.hs2.Room(t, s.roomID).NID, "m.room.topic")
	if err != nil || len(cur) != 1 || cur[0].EventID != topic {
		t.Fatalf("hs2's topic: %+v, %v (want %s)", cur, err, topic)
	}
}

// TestSendWithWithheldPrevEventsAnswersWithoutError: a PDU whose prev
// events its origin does not give (hs3 passes on hs1's message but is not
// in the room, so its /get_missing_events answers nothing) is dropped: no
// state is fetched for it and, as Synapse answers a transaction before it
// processes the PDUs, the answer carries no error for it.
func TestSendWithWithheldPrevEventsAnswersWithoutError(t *testing.T) {
	s := newShared(t, nil)
	hs3 := s.n.Start("hs3")
	s.alice.Send(t, s.roomID, "not passed on")
	m := s.alice.Send(t, s.roomID, "passed on by hs3")
	status, ans := fedtest.SendTxn(t, hs3, s.hs2.Name, "withheld", s.fromHS1(t, m), nil)
	if status != 200 {
		t.Fatalf("send: %d %s", status, ans.Raw)
	}
	ans.OK(t, m)
	if got := s.hs2.Status(m); got != -1 {
		t.Fatalf("%s stored with status %d", m, got)
	}
}

// TestSyncShowsGapAsLimited: when a gap in the timeline stays open (more
// missing events than one request brings, the oldest taken with the state
// its origin gives), an incremental /sync across it is limited and starts
// at the gap: bob's message from before is not shown as if the history in
// between were complete (as Synapse, so clients page back).
func TestSyncShowsGapAsLimited(t *testing.T) {
	s := newShared(t, nil)
	since := s.bob.Since(t)
	before := s.bob.Send(t, s.roomID, "before the gap")
	for i := 0; i < 30; i++ {
		s.alice.Send(t, s.roomID, fmt.Sprintf("never sent to hs2 %d", i))
	}
	last := s.alice.Send(t, s.roomID, "after the gap")
	_, ans := fedtest.SendTxn(t, s.hs1, s.hs2.Name, "gap", s.fromHS1(t, last), nil)
	ans.OK(t, last)

	var out struct {
		Rooms struct {
			Join map[string]struct {
				Timeline struct {
					Events    []fedtest.ClientEvent `json:"events"`
					Limited   bool                  `json:"limited"`
					PrevBatch string                `json:"prev_batch"`
				} `json:"timeline"`
			} `json:"join"`
		} `json:"rooms"`
	}
	filter := url.QueryEscape(`{"room":{"timeline":{"limit":50}}}`)
	s.bob.MustDo(t, "GET", "/sync?timeout=0&filter="+filter+"&since="+url.QueryEscape(since), nil, &out)
	tl := out.Rooms.Join[s.roomID].Timeline
	got := fedtest.IDs(tl.Events)
	if !tl.Limited || len(got) == 0 || got[len(got)-1] != last || slices.Contains(got, before) || tl.PrevBatch == "" {
		t.Fatalf("timeline across the gap: limited=%v prev_batch=%q events=%v (before the gap: %s)", tl.Limited, tl.PrevBatch, got, before)
	}
}

// TestSendIsIdempotent: a transaction ID seen before from the same origin
// is answered as the first time and its PDUs are not processed again; the
// same ID from another origin is another transaction.
func TestSendIsIdempotent(t *testing.T) {
	s := newShared(t, nil)
	hs3 := s.n.Start("hs3")
	m1 := s.alice.Send(t, s.roomID, "one")
	m2 := s.alice.Send(t, s.roomID, "two")
	_, first := fedtest.SendTxn(t, s.hs1, s.hs2.Name, "same", s.fromHS1(t, m1), nil)
	first.OK(t, m1)
	status, again := fedtest.SendTxn(t, s.hs1, s.hs2.Name, "same", s.fromHS1(t, m2), nil)
	if status != 200 || string(again.Raw) != string(first.Raw) {
		t.Fatalf("retried transaction: %d %s, first answer %s", status, again.Raw, first.Raw)
	}
	if s.hs2.Status(m2) != -1 {
		t.Fatal("the retried transaction's PDUs were processed")
	}
	// hs3 is not in the room: its transaction "same" is its own, answered
	// with its own outcome.
	_, other := fedtest.SendTxn(t, hs3, s.hs2.Name, "same", s.fromHS1(t, m2), nil)
	if _, found := other.PDUs[m2]; !found {
		t.Fatalf("hs3's transaction got hs1's answer: %s", other.Raw)
	}
}

// TestSendLimits: more than 50 PDUs or 100 EDUs is 400; the limits
// themselves pass, and EDUs of any shape are accepted and ignored.
func TestSendLimits(t *testing.T) {
	s := newShared(t, nil)
	m := s.alice.Send(t, s.roomID, "x")
	pdu := s.hs1.StoredJSON(t, m)
	many := func(n int) []json.RawMessage {
		out := make([]json.RawMessage, n)
		for i := range out {
			out[i] = pdu
		}
		return out
	}
	edus := func(n int) []any {
		out := make([]any, n)
		for i := range out {
			switch i % 4 {
			case 0:
				out[i] = map[string]any{"edu_type": "m.typing", "content": map[string]any{"room_id": s.roomID, "user_id": s.alice.ID, "typing": true}}
			case 1:
				out[i] = "not an object"
			case 2:
				out[i] = map[string]any{"edu_type": 5, "content": []int{1}}
			default:
				out[i] = nil
			}
		}
		return out
	}
	if status, ans := fedtest.SendTxn(t, s.hs1, s.hs2.Name, "too-many-pdus", many(51), nil); status != 400 || errcode(ans.Raw) != "M_BAD_JSON" {
		t.Fatalf("51 PDUs: %d %s", status, ans.Raw)
	}
	if status, ans := fedtest.SendTxn(t, s.hs1, s.hs2.Name, "too-many-edus", nil, edus(101)); status != 400 || errcode(ans.Raw) != "M_BAD_JSON" {
		t.Fatalf("101 EDUs: %d %s", status, ans.Raw)
	}
	status, ans := fedtest.SendTxn(t, s.hs1, s.hs2.Name, "at-the-limits", many(50), edus(100))
	if status != 200 {
		t.Fatalf("50 PDUs and 100 EDUs: %d %s", status, ans.Raw)
	}
	ans.OK(t, m)
	// Bodies of the wrong shape.
	for name, body := range map[string]any{
		"pdus not a list": map[string]any{"origin": "hs1", "pdus": map[string]any{}},
		"edus not a list": map[string]any{"origin": "hs1", "pdus": []any{}, "edus": "x"},
		"not an object":   []int{1, 2},
	} {
		status, raw := s.hs1.Send(t, s.hs1.SignedRequest(t, "PUT", s.hs2.Name, "/_matrix/federation/v1/send/shape-"+strings.ReplaceAll(name, " ", "-"), body))
		if status != 400 || errcode(raw) != "M_BAD_JSON" {
			t.Errorf("%s: %d %s", name, status, raw)
		}
	}
}

// TestSendRefusesForgeries: each PDU gets its own outcome; forged, invalid
// and unauthorised events are refused (or stored rejected, or soft-failed)
// as the spec says, a PDU whose content does not match its hash is taken
// redacted, and none of the refused ones reaches /sync.
func TestSendRefusesForgeries(t *testing.T) {
	s := newShared(t, nil)
	s.n.Start("hs3") // so that what is missing is hs3's signature, not hs3
	// charlie of hs1 joins, and is banned later: his old branch will be
	// soft-failed.
	charlie := s.hs1.Register(t, "charlie")
	charlie.MustDo(t, "POST", "/join/"+s.roomID, map[string]any{}, nil)
	charlieJoin := timeline(t, s.hs1, s.roomID)
	joinID := charlieJoin[len(charlieJoin)-1].EventID
	ban := s.alice.SetState(t, s.roomID, spec.MRoomMember, charlie.ID, map[string]any{"membership": "ban"})
	_, ans := fedtest.SendTxn(t, s.hs1, s.hs2.Name, "setup", s.fromHS1(t, joinID, ban), nil)
	ans.OK(t, joinID, ban)

	since := s.bob.Since(t)
	hs1 := s.hs1.Signer()
	msg := fedtest.Message
	forgedSig := fedtest.Build(t, s.hs2, s.hs1.ForgedSigner(), s.roomID, msg(s.alice.ID, "forged signature"))
	otherServer := fedtest.Build(t, s.hs2, hs1, s.roomID, msg("@carol:hs3", "hs1 speaking for hs3"))
	unauthorised := fedtest.Build(t, s.hs2, hs1, s.roomID, msg("@mallory:hs1", "not a member"))
	softFailed := fedtest.Build(t, s.hs2, hs1, s.roomID, fedtest.Proto{Sender: charlie.ID, Type: "m.room.message",
		Content: map[string]any{"msgtype": "m.text", "body": "from before my ban"},
		Prevs:   []string{joinID},
		Auth:    []string{s.hs2.StateID(t, s.roomID, spec.MRoomCreate, ""), s.hs2.StateID(t, s.roomID, spec.MRoomPowerLevels, ""), joinID}})
	tampered := fedtest.Build(t, s.hs2, hs1, s.roomID, msg(s.alice.ID, "the original words"))
	tamperedJSON := fedtest.WithContent(t, tampered.JSON(), map[string]any{"msgtype": "m.text", "body": "words put in alice's mouth"})
	good := fedtest.Build(t, s.hs2, hs1, s.roomID, fedtest.Proto{Sender: s.alice.ID, Type: "m.room.message",
		Content: map[string]any{"msgtype": "m.text", "body": "a good one"},
		Prevs:   []string{ban}})

	pdus := append(fedtest.JSONs(forgedSig, otherServer, unauthorised, softFailed), tamperedJSON, good.JSON(),
		json.RawMessage(`{"room_id": "!unknown:hs1", "type": "m.room.message", "sender": "@alice:hs1", "content": {}, "depth": 5,
			"prev_events": [], "auth_events": [], "origin_server_ts": 1, "hashes": {"sha256": "x"}, "signatures": {}}`),
		json.RawMessage(`"not even an object"`),
		// gomatrixserverlib's trusted parser panics on the ID of this one.
		json.RawMessage(`{"room_id": "!unknown:hs1", "type": "m.room.create", "state_key": "", "content": 0}`))
	status, ans := fedtest.SendTxn(t, s.hs1, s.hs2.Name, "forgeries", pdus, nil)
	if status != 200 {
		t.Fatalf("send: %d %s", status, ans.Raw)
	}
	ans.Refused(t, forgedSig.EventID(), "signature")
	ans.Refused(t, otherServer.EventID(), "signature")
	ans.OK(t, unauthorised.EventID(), softFailed.EventID(), tampered.EventID(), good.EventID())
	for id, want := range map[string]int{
		forgedSig.EventID(): -1, otherServer.EventID(): -1,
		unauthorised.EventID(): storage.EventRejected, softFailed.EventID(): storage.EventSoftFailed,
		tampered.EventID(): storage.EventAccepted, good.EventID(): storage.EventAccepted,
	} {
		if got := s.hs2.Status(id); got != want {
			t.Errorf("%s stored with status %d, want %d", id, got, want)
		}
	}
	unknown := 0
	for id, res := range ans.PDUs {
		if strings.Contains(res.Error, "not in room") {
			unknown++
			if id == "" {
				t.Error("empty event ID in the answer")
			}
		}
	}
	if unknown != 1 {
		t.Fatalf("PDU of an unknown room: %s", ans.Raw)
	}
	// The tampered event is stored (and delivered) redacted.
	if stored := string(s.hs2.StoredJSON(t, tampered.EventID())); strings.Contains(stored, "words") {
		t.Fatalf("tampered event stored with its content: %s", stored)
	}
	seen := s.bob.SyncUntil(t, since, s.roomID, good.EventID(), tampered.EventID())
	for _, e := range seen {
		switch e.EventID {
		case forgedSig.EventID(), otherServer.EventID(), unauthorised.EventID(), softFailed.EventID():
			t.Errorf("%s reached /sync", e.EventID)
		case tampered.EventID():
			if strings.Contains(string(e.Content), "words") {
				t.Errorf("tampered content reached /sync: %s", e.Content)
			}
		}
	}

	// A request whose X-Matrix origin is not the server that signed it.
	wrong := fedtest.SignedAs(t, "hs3", s.hs1.Federation.Own.KeyID, s.hs1.Federation.Own.PrivateKey,
		"PUT", s.hs2.Name, "/_matrix/federation/v1/send/wrong-origin", map[string]any{"pdus": []any{}})
	if status, raw := s.hs1.Send(t, wrong); status != 401 || errcode(raw) != "M_UNAUTHORIZED" {
		t.Fatalf("wrong origin: %d %s", status, raw)
	}
}

// TestSendServerACL: with hs3 denied by the room's server ACL, hs3's
// transactions are refused for that room, and so are PDUs of hs3's users
// that another server passes on; history requests of a denied server are
// refused too.
func TestSendServerACL(t *testing.T) {
	s := newShared(t, nil)
	hs3 := s.n.Start("hs3")
	acl := s.alice.SetState(t, s.roomID, "m.room.server_acl", "", map[string]any{"allow": []string{"*"}, "deny": []string{"hs3"}})
	_, ans := fedtest.SendTxn(t, s.hs1, s.hs2.Name, "acl", s.fromHS1(t, acl), nil)
	ans.OK(t, acl)

	m := s.alice.Send(t, s.roomID, "passed on by hs3")
	_, ans = fedtest.SendTxn(t, hs3, s.hs2.Name, "from-hs3", s.fromHS1(t, m), nil)
	ans.Refused(t, m, "banned")
	eve := fedtest.Build(t, s.hs2, hs3.Signer(), s.roomID, fedtest.Proto{Sender: "@eve:hs3", Type: "m.room.message",
		Content: map[string]any{"msgtype": "m.text", "body": "hs3 speaks through hs1"}})
	_, ans = fedtest.SendTxn(t, s.hs1, s.hs2.Name, "of-hs3", fedtest.JSONs(eve), nil)
	ans.Refused(t, eve.EventID(), "banned")
	for _, id := range []string{m, eve.EventID()} {
		if s.hs2.Status(id) != -1 {
			t.Fatalf("%s stored", id)
		}
	}

	// hs1 denies hs2: hs2's history requests are refused.
	path := "/_matrix/federation/v1/state_ids/" + s.roomID + "?event_id=" + s.bobJoin.EventID()
	if status, raw := fedGet(t, s.hs2, s.hs1.Name, path, nil); status != 200 {
		t.Fatalf("state_ids before the ACL: %d %s", status, raw)
	}
	s.alice.SetState(t, s.roomID, "m.room.server_acl", "", map[string]any{"allow": []string{"*"}, "deny": []string{"hs2", "hs3"}})
	if status, raw := fedGet(t, s.hs2, s.hs1.Name, path, nil); status != 403 || errcode(raw) != "M_FORBIDDEN" {
		t.Fatalf("state_ids of a denied server: %d %s", status, raw)
	}
}

// TestSenderDeliversThroughSend: with the servers' outbound senders
// running, what alice says on hs1 reaches bob on hs2 on its own (hs1's
// sender, hs2's /send), in order.
func TestSenderDeliversThroughSend(t *testing.T) {
	s := newPairSending(t)
	s.roomID = s.alice.CreateRoom(t, map[string]any{"preset": "public_chat", "room_version": "11"})
	s.bobJoin = joinFromHS2(t, s.hs1, s.hs2, s.roomID, s.bob)
	since := s.bob.Since(t)
	var sent []string
	for i := 0; i < 3; i++ {
		sent = append(sent, s.alice.Send(t, s.roomID, fmt.Sprintf("delivered %d", i)))
	}
	seen := fedtest.IDs(s.bob.SyncUntil(t, since, s.roomID, sent...))
	for i := 1; i < len(sent); i++ {
		if slices.Index(seen, sent[i-1]) > slices.Index(seen, sent[i]) {
			t.Fatalf("out of order: %v, want %v", seen, sent)
		}
	}
}
