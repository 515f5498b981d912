package fedrooms

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/federationapi"
	"matrixhs/internal/httputil"
	"matrixhs/roomserver"
	"matrixhs/tests/fedtest"
)

// inputSend gives a server a minimal PUT /send that inputs the PDUs it
// receives into its roomserver (no gap filling), standing in for the
// inbound /send of another part of federation; *hs is the server, set
// once started.
func inputSend(hs **fedtest.Server) fedtest.Option {
	return fedtest.WithFederation(func(o *federationapi.Options) {
		o.ExtraRoutes = func(rt *httputil.Router, api *federationapi.API) {
			rt.Handle("/_matrix/federation/v1/send/{txnId}", api.Auth.Handler(func(r *http.Request, origin spec.ServerName) (any, error) {
				raw, _ := io.ReadAll(r.Body)
				var txn struct {
					PDUs []json.RawMessage `json:"pdus"`
				}
				if err := json.Unmarshal(raw, &txn); err != nil {
					return nil, httputil.BadJSON("%v", err)
				}
				for _, js := range txn.PDUs {
					// As the inbound /send does for rooms this server is not in.
					if handled, err := (*hs).Rooms.InputRescindedInvite(r.Context(), origin, js); handled || err != nil {
						continue
					}
					var probe struct {
						RoomID string `json:"room_id"`
					}
					json.Unmarshal(js, &probe)
					ver, err := (*hs).Rooms.RoomVersion(r.Context(), probe.RoomID)
					if err != nil {
						continue
					}
					pdu, err := ver.NewEventFromUntrustedJSON(js)
					if err != nil {
						continue
					}
					if _, err := (*hs).Rooms.Input(r.Context(), []roomserver.InputEvent{{Kind: roomserver.KindNew, Event: pdu, Origin: origin}}); err != nil {
						return nil, err
					}
				}
				return map[string]any{"pdus": map[string]any{}}, nil
			}), http.MethodPut)
		}
	})
}

// TestMembershipThroughTheSender: with the sender carrying events, a join
// hs1 accepts as the room's resident reaches the room's other servers
// (Forward), a kick reaches the kicked user's server, and an inviter's
// rescission reaches the invitee's server, which each user's sync shows.
func TestMembershipThroughTheSender(t *testing.T) {
	n := fedtest.NewNetwork(t)
	var hs2 *fedtest.Server
	hs1 := n.Start("hs1")
	hs2 = n.Start("hs2", inputSend(&hs2))
	hs3 := n.Start("hs3")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	carol := newUser(t, hs3, "carol")
	dave := newUser(t, hs2, "dave")
	roomID := alice.createRoom(map[string]any{"preset": "public_chat"})
	bob.mustJoin(roomID, "hs1")

	// carol joins through hs1, which forwards her join to hs2.
	carol.mustJoin(roomID, "hs1")
	bob.syncUntil("carol's join", func(s map[string]any) bool {
		return hasMember(get(s, "rooms", "join", roomID, "timeline", "events"), carol.ID, spec.Join)
	})

	// Kicked, bob hears of it through hs2.
	alice.must("POST", roomPath(roomID, "/kick"), map[string]any{"user_id": bob.ID})
	bob.leftFrom(roomID)

	// dave is invited, then the invite is withdrawn: hs2 is out of the
	// room, the rescission reaches it as the target's server.
	alice.invite(roomID, dave.ID).want(t, http.StatusOK, "")
	dave.invitedTo(roomID)
	alice.must("POST", roomPath(roomID, "/kick"), map[string]any{"user_id": dave.ID})
	dave.leftFrom(roomID)
	if m := membershipOn(t, hs1, roomID, dave.ID); m != spec.Leave {
		t.Fatalf("hs1 has dave as %q", m)
	}
}
