package fedsecurity

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/federationapi"
	"matrixhs/storage"
	"matrixhs/tests/fedtest"
)

// keyValidity is how long hs1's published key is valid in the forgery
// tests: events it signs for later than that must be refused.
const keyValidity = time.Hour

// victim is a room made on hs1 that bob of hs2 and carol of hs3 joined;
// hs1 turns forger and sends hs2 what hs2 must refuse.
type victim struct {
	nw                *network
	roomID            string
	alice, dave       *fedtest.User // hs1: the room's creator, a member without power
	bob               *fedtest.User // hs2
	carol             *fedtest.User // hs3
	since, checkpoint string        // bob's sync token and the last event before the forgeries
}

// newVictim makes the room of the version and waits until every server
// holds all of it.
func newVictim(t *testing.T, nw *network, version string) *victim {
	t.Helper()
	v := &victim{nw: nw}
	v.alice, v.dave = nw.user(t, nw.hs1, "alice"), nw.user(t, nw.hs1, "dave")
	v.bob, v.carol = nw.user(t, nw.hs2, "bob"), nw.user(t, nw.hs3, "carol")
	v.roomID = v.alice.CreateRoom(t, map[string]any{"preset": "public_chat", "room_version": version})
	for _, u := range []*fedtest.User{v.bob, v.carol, v.dave} {
		u.Join(t, v.roomID, nw.hs1)
	}
	waitMembership(t, v.roomID, "join", []*fedtest.User{v.alice, v.bob, v.carol, v.dave}, nw.servers()...)
	v.checkpoint = v.alice.Send(t, v.roomID, "before the forgeries")
	quiesce(t, v.roomID, v.checkpoint, nw.servers()...)
	v.since = v.bob.Since(t)
	return v
}

// build is an event of the room on top of hs2's head, signed by.
func (v *victim) build(t *testing.T, by fedtest.Signer, p fedtest.Proto) gomatrixserverlib.PDU {
	t.Helper()
	return fedtest.Build(t, v.nw.hs2, by, v.roomID, p)
}

// unsigned is an event's JSON without its signatures.
func unsigned(t *testing.T, pdu gomatrixserverlib.PDU) json.RawMessage {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal(pdu.JSON(), &ev); err != nil {
		t.Fatal(err)
	}
	delete(ev, "signatures")
	out, _ := json.Marshal(ev)
	return out
}

// TestForgedPDUsRefused: hs1 sends hs2, through hs2's /send, events that
// the spec says to refuse, in rooms of versions 11 and 12. Those with bad
// signatures (another key under hs1's key ID, none at all, a sender of
// hs3 that hs3 did not sign, a timestamp past the valid_until_ts of hs1's
// key) get an error and are not stored; those the auth rules refuse (a
// non-member speaking, a member without power changing the power levels
// or the name; in v12 a moderator kicking the room's creator, power levels
// that name the creator) are stored rejected; those whose content does not match
// their hash are taken redacted (kept and served so). None of the refused
// ones reaches bob's /sync, /messages or /state, nor becomes a prev event
// of hs2's next event; the good ones do reach him.
func TestForgedPDUsRefused(t *testing.T) {
	nw := newNetwork(t, fedtest.WithFederation(func(o *federationapi.Options) { o.KeyValidity = keyValidity }))
	for _, version := range []string{"11", "12"} {
		t.Run("v"+version, func(t *testing.T) {
			v := newVictim(t, nw, version)
			var creatorRules []gomatrixserverlib.PDU
			if version == "12" {
				creatorRules = v.againstCreators(t)
			}
			hs1 := nw.hs1.Signer()
			msg := fedtest.Message
			badSig := v.build(t, nw.hs1.ForgedSigner(), msg(v.alice.ID, "a forged signature"))
			noSig := v.build(t, hs1, msg(v.alice.ID, "no signature at all"))
			otherServer := v.build(t, hs1, msg(v.carol.ID, "hs1 speaking for hs3"))
			late := msg(v.alice.ID, "signed for after the key's validity")
			late.TS = time.Now().Add(keyValidity + time.Hour)
			lateKey := v.build(t, hs1, late)
			nonMember := v.build(t, hs1, msg("@mallory:hs1", "not a member"))
			powerGrab := v.build(t, hs1, fedtest.Proto{Sender: v.dave.ID, Type: spec.MRoomPowerLevels, StateKey: fedtest.SK(""),
				Content: map[string]any{"users": map[string]int{v.dave.ID: 100}}})
			rename := v.build(t, hs1, fedtest.Proto{Sender: v.dave.ID, Type: spec.MRoomName, StateKey: fedtest.SK(""),
				Content: map[string]any{"name": "dave's room"}})
			tampered := v.build(t, hs1, msg(v.alice.ID, "the original words"))
			tamperedName := v.build(t, hs1, fedtest.Proto{Sender: v.alice.ID, Type: spec.MRoomName, StateKey: fedtest.SK(""),
				Content: map[string]any{"name": "the original name"}})
			good := v.build(t, hs1, msg(v.alice.ID, "a good one"))
			rejected := append([]gomatrixserverlib.PDU{nonMember, powerGrab, rename}, creatorRules...)

			pdus := append(fedtest.JSONs(badSig), unsigned(t, noSig))
			pdus = append(pdus, fedtest.JSONs(append([]gomatrixserverlib.PDU{otherServer, lateKey}, rejected...)...)...)
			pdus = append(pdus,
				fedtest.WithContent(t, tampered.JSON(), map[string]any{"msgtype": "m.text", "body": "words put in alice's mouth"}),
				fedtest.WithContent(t, tamperedName.JSON(), map[string]any{"name": "a name alice never gave"}),
				good.JSON())
			status, ans := fedtest.SendTxn(t, nw.hs1, nw.hs2.Name, "forgeries-v"+version, pdus, nil)
			if status != 200 {
				t.Fatalf("send: %d %s", status, ans.Raw)
			}
			dropped := []gomatrixserverlib.PDU{badSig, noSig, otherServer, lateKey}
			for _, p := range dropped {
				ans.Refused(t, p.EventID(), "signature")
				if st := nw.hs2.Status(p.EventID()); st != -1 {
					t.Errorf("%s (%s) stored with status %d", p.EventID(), p.Content(), st)
				}
			}
			for _, p := range rejected {
				ans.OK(t, p.EventID())
				if st := nw.hs2.Status(p.EventID()); st != storage.EventRejected {
					t.Errorf("%s (%s %s) stored with status %d, want rejected", p.EventID(), p.Type(), p.Content(), st)
				}
			}
			ans.OK(t, tampered.EventID(), tamperedName.EventID(), good.EventID())
			for _, p := range []gomatrixserverlib.PDU{tampered, tamperedName} {
				if st := nw.hs2.Status(p.EventID()); st != storage.EventAccepted {
					t.Errorf("tampered %s stored with status %d, want accepted (redacted)", p.Type(), st)
				}
				var stored struct {
					Content map[string]any `json:"content"`
				}
				if json.Unmarshal(nw.hs2.StoredJSON(t, p.EventID()), &stored); len(stored.Content) != 0 {
					t.Errorf("tampered %s stored with content %v, want it redacted", p.Type(), stored.Content)
				}
			}

			refused := append(slices.Clone(dropped), rejected...)
			v.checkInvisible(t, refused, []gomatrixserverlib.PDU{tampered, tamperedName, good})
			// The redacted name is the room's name now: nothing.
			if name := stateContent(t, v.bob, v.roomID, spec.MRoomName, ""); len(name) != 0 {
				t.Errorf("room name after the tampered name event: %v", name)
			}
			if id := nw.hs2.StateID(t, v.roomID, spec.MRoomName, ""); id != tamperedName.EventID() {
				t.Errorf("name state %s, want the redacted %s", id, tamperedName.EventID())
			}
			if pl := stateContent(t, v.bob, v.roomID, spec.MRoomPowerLevels, ""); pl["users"].(map[string]any)[v.dave.ID] != nil {
				t.Errorf("dave's power grab took: %v", pl)
			}
		})
	}
}

// againstCreators are v12 events the auth rules refuse because alice
// created the room (MSC4289): her moderator, at the highest power level a
// user can be given, kicking her; her power levels naming her in users.
func (v *victim) againstCreators(t *testing.T) []gomatrixserverlib.PDU {
	t.Helper()
	mod := v.nw.user(t, v.nw.hs1, "mod")
	mod.Join(t, v.roomID, v.nw.hs1)
	promoted := setPower(t, v.alice, v.roomID, mod.ID, 100)
	waitHeld(t, v.roomID, []string{promoted}, v.nw.hs2)
	hs1 := v.nw.hs1.Signer()
	kick := v.build(t, hs1, fedtest.Proto{Sender: mod.ID, Type: spec.MRoomMember, StateKey: fedtest.SK(v.alice.ID),
		Content: map[string]any{"membership": "leave"}})
	var pl map[string]any
	v.alice.MustDo(t, "GET", fedtest.RoomPath(v.roomID, "/state/m.room.power_levels/"), nil, &pl)
	pl["users"].(map[string]any)[v.alice.ID] = 100
	listed := v.build(t, hs1, fedtest.Proto{Sender: v.alice.ID, Type: spec.MRoomPowerLevels, StateKey: fedtest.SK(""), Content: pl})
	return []gomatrixserverlib.PDU{kick, listed}
}

// checkInvisible checks that none of refused reaches bob's /sync,
// /messages or /state, that every one of shown does (with its content
// as hs2 stored it), and that hs2 builds on none of refused.
func (v *victim) checkInvisible(t *testing.T, refused, shown []gomatrixserverlib.PDU) {
	t.Helper()
	var want []string
	for _, p := range shown {
		want = append(want, p.EventID())
	}
	seen := map[string]fedtest.ClientEvent{}
	for _, e := range v.bob.SyncUntil(t, v.since, v.roomID, want...) {
		seen["sync "+e.EventID] = e
	}
	for _, e := range v.bob.MessagesAfter(t, v.roomID, v.checkpoint) {
		seen["messages "+e.EventID] = e
	}
	for _, e := range v.bob.RoomState(t, v.roomID) {
		seen["state "+e.EventID] = e
	}
	for _, p := range refused {
		for _, where := range []string{"sync", "messages", "state"} {
			if e, ok := seen[where+" "+p.EventID()]; ok {
				t.Errorf("bob's /%s shows refused %s %s", where, e.Type, e.Content)
			}
		}
	}
	for _, p := range shown {
		var stored struct {
			Content json.RawMessage `json:"content"`
		}
		json.Unmarshal(v.nw.hs2.StoredJSON(t, p.EventID()), &stored)
		for _, where := range []string{"sync", "messages"} {
			e, ok := seen[where+" "+p.EventID()]
			if !ok {
				t.Errorf("bob's /%s lacks %s", where, p.EventID())
				continue
			}
			if !jsonEqual(e.Content, stored.Content) {
				t.Errorf("bob's /%s serves %s with content %s, stored %s", where, p.EventID(), e.Content, stored.Content)
			}
		}
	}
	// hs2's next event builds on what it accepted only.
	next := v.bob.Send(t, v.roomID, "after the forgeries")
	prevs := v.nw.hs2.PDU(t, next).PrevEventIDs()
	for _, p := range refused {
		if slices.Contains(prevs, p.EventID()) {
			t.Errorf("hs2 built %s on refused %s", next, p.EventID())
		}
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}
