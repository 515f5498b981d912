package fedsecurity

import (
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
	"matrixhs/tests/fedtest"
)

// TestSoftFailedEventsStayHidden: alice bans dave (both of hs1) while dave,
// on a branch from before the ban, changes his display name and speaks;
// hs1 passes his events on to hs2 through /send once hs2 holds the ban.
// They are valid against their auth events and the state before them, but
// not against hs2's current state: soft-failed, so stored (others may build
// on them) without an error, but never shown to bob (/sync, /messages,
// /state), never moving the state (dave stays banned) and never among the
// prev events of hs2's next event or its forward extremities.
func TestSoftFailedEventsStayHidden(t *testing.T) {
	nw := newNetwork(t)
	for _, version := range []string{"11", "12"} {
		t.Run("v"+version, func(t *testing.T) {
			v := newVictim(t, nw, version)
			hs2 := nw.hs2
			// The state dave's branch builds on: from before the ban.
			auth := []string{hs2.StateID(t, v.roomID, spec.MRoomPowerLevels, ""), hs2.StateID(t, v.roomID, spec.MRoomMember, v.dave.ID)}
			if version != "12" {
				auth = append(auth, hs2.StateID(t, v.roomID, spec.MRoomCreate, ""))
			}
			memberAuth := append([]string{hs2.StateID(t, v.roomID, spec.MRoomJoinRules, "")}, auth...)

			ban := member(t, v.alice, v.roomID, v.dave.ID, "ban")
			waitHeld(t, v.roomID, []string{ban}, hs2)

			hs1 := nw.hs1.Signer()
			rename := v.build(t, hs1, fedtest.Proto{Sender: v.dave.ID, Type: spec.MRoomMember, StateKey: fedtest.SK(v.dave.ID),
				Content: map[string]any{"membership": "join", "displayname": "dave, unbanned"}, Prevs: []string{v.checkpoint}, Auth: memberAuth})
			says := v.build(t, hs1, fedtest.Proto{Sender: v.dave.ID, Type: "m.room.message",
				Content: map[string]any{"msgtype": "m.text", "body": "from before my ban"}, Prevs: []string{rename.EventID()}, Depth: rename.Depth() + 1, Auth: auth})
			status, ans := fedtest.SendTxn(t, nw.hs1, hs2.Name, "soft-fail-v"+version, fedtest.JSONs(rename, says), nil)
			if status != 200 {
				t.Fatalf("send: %d %s", status, ans.Raw)
			}
			ans.OK(t, rename.EventID(), says.EventID())
			for _, p := range []gomatrixserverlib.PDU{rename, says} {
				if st := hs2.Status(p.EventID()); st != storage.EventSoftFailed {
					t.Errorf("%s stored with status %d, want soft-failed", p.EventID(), st)
				}
			}
			if id := hs2.StateID(t, v.roomID, spec.MRoomMember, v.dave.ID); id != ban {
				t.Errorf("dave's membership on hs2 is %s, want the ban %s", id, ban)
			}
			for _, id := range hs2.Room(t, v.roomID).Extremities {
				if id == rename.EventID() || id == says.EventID() {
					t.Errorf("soft-failed %s is a forward extremity", id)
				}
			}
			v.checkInvisible(t, []gomatrixserverlib.PDU{rename, says}, []gomatrixserverlib.PDU{hs2.PDU(t, ban)})
		})
	}
}

// TestLyingServer: hs1 lies about the room's DAG when hs2 fills gaps from
// it (/get_missing_events, /state_ids answered as it pleases).
//
// A withheld event: hs1 first sends an event of alice built on one of
// dave's that it withholds from /get_missing_events: as Synapse, hs2 drops
// the pushed event rather than take it on the state hs1 offers. Then dave's
// arrives: dave was banned before, so it is checked against the current
// state and soft-failed, never shown to bob. (An event that arrives after
// one naming it was stored is covered by roomserver's TestLateEventSoftFailed.)
//
// A forged gap: hs1 answers /get_missing_events with a prev event whose
// signature is forged: it is dropped, and so is the pushed event after it.
func TestLyingServer(t *testing.T) {
	lie := &liar{}
	nw := newNetwork(t, fedtest.WithFederation(lie.routes))
	v := newVictim(t, nw, "11")
	hs2 := nw.hs2
	create := hs2.StateID(t, v.roomID, spec.MRoomCreate, "")
	pl := hs2.StateID(t, v.roomID, spec.MRoomPowerLevels, "")
	daveJoin, aliceJoin := hs2.StateID(t, v.roomID, spec.MRoomMember, v.dave.ID), hs2.StateID(t, v.roomID, spec.MRoomMember, v.alice.ID)
	ban := member(t, v.alice, v.roomID, v.dave.ID, "ban")
	waitHeld(t, v.roomID, []string{ban}, hs2)
	hs1 := nw.hs1.Signer()
	// after builds alice's message on prev (a message after the
	// checkpoint), and has hs1 answer /state_ids for it with the state
	// before the checkpoint, which is the state after prev.
	after := func(prev gomatrixserverlib.PDU, body string) gomatrixserverlib.PDU {
		next := v.build(t, hs1, fedtest.Proto{Sender: v.alice.ID, Type: "m.room.message",
			Content: map[string]any{"msgtype": "m.text", "body": body}, Prevs: []string{prev.EventID()},
			Depth: prev.Depth() + 1, Auth: []string{create, pl, aliceJoin}})
		lie.answerStateIDs(t, nw.hs1, v.roomID, next.EventID(), v.checkpoint)
		return next
	}

	withheld := v.build(t, hs1, fedtest.Proto{Sender: v.dave.ID, Type: "m.room.message",
		Content: map[string]any{"msgtype": "m.text", "body": "from before my ban, late"}, Prevs: []string{v.checkpoint},
		Auth: []string{create, pl, daveJoin}})
	next := after(withheld, "after dave's")
	_, ans := fedtest.SendTxn(t, nw.hs1, hs2.Name, "next", fedtest.JSONs(next), nil)
	ans.OK(t, next.EventID())
	if st := hs2.Status(withheld.EventID()); st != -1 {
		t.Fatalf("hs2 got the withheld event (status %d)", st)
	}
	if st := hs2.Status(next.EventID()); st != -1 {
		t.Fatalf("hs2 took an event whose prev event was withheld (status %d)", st)
	}
	_, ans = fedtest.SendTxn(t, nw.hs1, hs2.Name, "late", fedtest.JSONs(withheld), nil)
	ans.OK(t, withheld.EventID())
	if st := hs2.Status(withheld.EventID()); st != storage.EventSoftFailed {
		t.Errorf("dave's late event stored with status %d, want soft-failed", st)
	}

	forged := v.build(t, nw.hs1.ForgedSigner(), fedtest.Proto{Sender: v.alice.ID, Type: "m.room.message",
		Content: map[string]any{"msgtype": "m.text", "body": "forged, in a gap"}, Prevs: []string{v.checkpoint}})
	lie.mu.Lock()
	lie.missing = fedtest.JSONs(forged)
	lie.mu.Unlock()
	onForged := after(forged, "after the forged one")
	_, ans = fedtest.SendTxn(t, nw.hs1, hs2.Name, "gap", fedtest.JSONs(onForged), nil)
	ans.OK(t, onForged.EventID())
	if st := hs2.Status(forged.EventID()); st != -1 {
		t.Errorf("the forged gap event was stored with status %d", st)
	}
	if st := hs2.Status(onForged.EventID()); st != -1 {
		t.Errorf("the event on the forged gap was stored with status %d", st)
	}
	v.checkInvisible(t, []gomatrixserverlib.PDU{withheld, forged, next, onForged}, []gomatrixserverlib.PDU{hs2.PDU(t, ban)})
}
