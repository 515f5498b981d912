package fedsecurity

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/tests/fedtest"
)

// TestServerACLDeniedOrigin: once the room's m.room.server_acl denies hs3
// (which has a member), hs3's PDUs for the room are refused through /send
// by hs1 and hs2 (and so are PDUs of hs3's users another server passes
// on), and every room-scoped request of hs3 — history, state, events,
// joins, leaves, knocks, invites — is 403 M_FORBIDDEN, whatever else is
// wrong with it; hs2, which the ACL allows, is served. Nothing hs3 sent is
// shown to bob.
func TestServerACLDeniedOrigin(t *testing.T) {
	nw := newNetwork(t)
	v := newVictim(t, nw, "11")
	acl := v.alice.SetState(t, v.roomID, "m.room.server_acl", "", map[string]any{"allow": []string{"*"}, "deny": []string{"hs3"}})
	waitHeld(t, v.roomID, []string{acl}, nw.servers()...)

	hs3 := nw.hs3.Signer()
	var refused []gomatrixserverlib.PDU
	for _, to := range []*fedtest.Server{nw.hs1, nw.hs2} {
		own := fedtest.Build(t, to, hs3, v.roomID, fedtest.Message(v.carol.ID, "hs3 sends it itself"))
		relayed := fedtest.Build(t, to, hs3, v.roomID, fedtest.Message(v.carol.ID, "hs1 passes it on"))
		_, ans := fedtest.SendTxn(t, nw.hs3, to.Name, "denied", fedtest.JSONs(own), nil)
		ans.Refused(t, own.EventID(), "server ACL")
		if to != nw.hs1 {
			_, ans = fedtest.SendTxn(t, nw.hs1, to.Name, "relayed", fedtest.JSONs(relayed), nil)
			ans.Refused(t, relayed.EventID(), "server ACL")
		}
		for _, p := range []gomatrixserverlib.PDU{own, relayed} {
			if st := to.Status(p.EventID()); st != -1 {
				t.Errorf("%s stored %s with status %d", to.Name, p.EventID(), st)
			}
		}
		refused = append(refused, own, relayed)
	}

	for _, to := range []*fedtest.Server{nw.hs1, nw.hs2} {
		for _, r := range roomRequests(t, v, to) {
			status, raw := nw.hs3.Send(t, nw.hs3.SignedRequest(t, r.method, to.Name, r.path, r.body))
			if status != http.StatusForbidden || errcode(raw) != "M_FORBIDDEN" {
				t.Errorf("hs3 → %s %s %s: %d %s, want 403 M_FORBIDDEN", to.Name, r.method, r.path, status, raw)
			}
		}
	}
	// hs2 is allowed: the same kind of request is served.
	path := "/_matrix/federation/v1/state_ids/" + url.PathEscape(v.roomID) + "?event_id=" + url.QueryEscape(v.checkpoint)
	if status, raw := nw.hs2.Send(t, nw.hs2.SignedRequest(t, "GET", nw.hs1.Name, path, nil)); status != 200 {
		t.Fatalf("hs2's /state_ids: %d %s", status, raw)
	}
	v.checkInvisible(t, refused, []gomatrixserverlib.PDU{nw.hs2.PDU(t, acl)})
}

type fedRequest struct {
	method, path string
	body         any
}

// roomRequests are requests about the room that only a server the room's
// ACL allows may make, to server to, each otherwise as hs3 would send it
// (some with a flaw besides: the ACL comes first).
func roomRequests(t *testing.T, v *victim, to *fedtest.Server) []fedRequest {
	t.Helper()
	room := url.PathEscape(v.roomID)
	ev := url.PathEscape(v.checkpoint)
	eve := "@eve:hs3"
	hs3 := v.nw.hs3.Signer()
	join := fedtest.Build(t, to, hs3, v.roomID, fedtest.Proto{Sender: eve, Type: spec.MRoomMember, StateKey: fedtest.SK(eve),
		Content: map[string]any{"membership": "join"}})
	leave := fedtest.Build(t, to, hs3, v.roomID, fedtest.Proto{Sender: v.carol.ID, Type: spec.MRoomMember, StateKey: fedtest.SK(v.carol.ID),
		Content: map[string]any{"membership": "leave"}})
	knock := fedtest.Build(t, to, hs3, v.roomID, fedtest.Proto{Sender: eve, Type: spec.MRoomMember, StateKey: fedtest.SK(eve),
		Content: map[string]any{"membership": "knock"}})
	invitee := v.bob.ID
	if to == v.nw.hs1 {
		invitee = v.alice.ID
	}
	invite := fedtest.Build(t, to, hs3, v.roomID, fedtest.Proto{Sender: v.carol.ID, Type: spec.MRoomMember, StateKey: fedtest.SK(invitee),
		Content: map[string]any{"membership": "invite"}})
	inviteBody := map[string]any{"room_version": "11", "event": json.RawMessage(invite.JSON()), "invite_room_state": []any{}}
	const v1, v2 = "/_matrix/federation/v1", "/_matrix/federation/v2"
	return []fedRequest{
		{"GET", v1 + "/state/" + room + "?event_id=" + ev, nil},
		{"GET", v1 + "/state_ids/" + room + "?event_id=" + ev, nil},
		{"GET", v1 + "/backfill/" + room + "?v=" + ev + "&limit=10", nil},
		{"POST", v1 + "/get_missing_events/" + room, map[string]any{"earliest_events": []string{}, "latest_events": []string{v.checkpoint}, "limit": 10}},
		{"GET", v1 + "/event/" + ev, nil},
		{"GET", v1 + "/event_auth/" + room + "/" + ev, nil},
		{"GET", v1 + fmt.Sprintf("/timestamp_to_event/%s?ts=%d&dir=b", room, time.Now().UnixMilli()), nil},
		{"GET", v1 + "/make_join/" + room + "/" + url.PathEscape(eve) + "?ver=11", nil},
		{"GET", v1 + "/make_join/" + room + "/" + url.PathEscape(eve) + "?ver=1", nil}, // a version the room is not
		{"PUT", v2 + "/send_join/" + room + "/" + url.PathEscape(join.EventID()), json.RawMessage(join.JSON())},
		{"GET", v1 + "/make_leave/" + room + "/" + url.PathEscape(v.carol.ID), nil},
		{"PUT", v2 + "/send_leave/" + room + "/" + url.PathEscape(leave.EventID()), json.RawMessage(leave.JSON())},
		{"GET", v1 + "/make_knock/" + room + "/" + url.PathEscape(eve) + "?ver=11", nil},
		{"GET", v1 + "/make_knock/" + room + "/" + url.PathEscape(eve) + "?ver=1", nil},
		{"PUT", v1 + "/send_knock/" + room + "/" + url.PathEscape(knock.EventID()), json.RawMessage(knock.JSON())},
		{"PUT", v2 + "/invite/" + room + "/" + url.PathEscape(invite.EventID()), inviteBody},
	}
}
