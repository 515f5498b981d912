package sender_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/federationapi"
	"matrixhs/federationapi/fedclient"
	"matrixhs/federationapi/sender"
	"matrixhs/internal/httputil"
	"matrixhs/roomserver"
	"matrixhs/storage"
	"matrixhs/tests/fedtest"
)

// The federation client is the sender's transport as it is.
var _ sender.Transport = (*fedclient.Client)(nil)

// sendEndpoint stands in for another server's PUT /send/{txnId}: behind
// X-Matrix authentication it records what arrives and answers with the
// status a test sets.
type sendEndpoint struct {
	mu     sync.Mutex
	status int
	txns   []receivedTxn
}

type receivedTxn struct {
	origin spec.ServerName
	id     string
	body   struct {
		Origin         string                  `json:"origin"`
		OriginServerTS int64                   `json:"origin_server_ts"`
		PDUs           []json.RawMessage       `json:"pdus"`
		EDUs           []gomatrixserverlib.EDU `json:"edus"`
	}
}

func (e *sendEndpoint) routes(o *federationapi.Options) {
	o.ExtraRoutes = func(rt *httputil.Router, api *federationapi.API) {
		rt.Handle("/_matrix/federation/v1/send/{txnId}", api.Auth.Handler(func(r *http.Request, origin spec.ServerName) (any, error) {
			raw, _ := io.ReadAll(r.Body)
			txn := receivedTxn{origin: origin, id: httputil.PathVar(r, "txnId")}
			if err := json.Unmarshal(raw, &txn.body); err != nil {
				return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_BAD_JSON", Msg: err.Error()}
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			e.txns = append(e.txns, txn)
			if e.status != 0 && e.status != http.StatusOK {
				return nil, &httputil.Error{Status: e.status, Code: "M_UNKNOWN", Msg: "test answer"}
			}
			return map[string]any{"pdus": map[string]any{}}, nil
		}), http.MethodPut)
	}
}

func (e *sendEndpoint) answer(status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.status = status
}

func (e *sendEndpoint) received() []receivedTxn {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.txns)
}

// Transactions go through the real federation client (discovery, TLS,
// X-Matrix signing) to another server, which authenticates them: PDUs are
// the stored events, EDUs carry origin and destination, a 500 is retried
// under the same transaction ID, a 400 drops the transaction.
func TestTransactionsOverFederation(t *testing.T) {
	ctx := context.Background()
	n := fedtest.NewNetwork(t)
	hs1 := n.Start("hs1")
	var hs2Send sendEndpoint
	hs2 := n.Start("hs2", fedtest.WithFederation(hs2Send.routes))

	alice, bob := "@alice:hs1", "@bob:hs2"
	room, err := hs1.Rooms.CreateRoom(ctx, roomserver.CreateRoomRequest{Creator: alice, Version: "11", Preset: roomserver.PresetPublicChat})
	if err != nil {
		t.Fatal(err)
	}
	// Bob's join, signed by hs2: hs1 checks it with hs2's key, fetched over
	// federation.
	joinEvent(t, hs1.DB, hs1.Rooms, hs2, room, bob)

	s := hs1.Sender // the server's own queue

	msg := sendText(t, hs1.Rooms, room, alice, "hello hs2")
	if err := s.QueueEDU(ctx, []string{"hs2"}, gomatrixserverlib.EDU{Type: "m.direct_to_device", Content: []byte(`{"message_id":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the event and the EDU at hs2", func() bool {
		var pdus, edus int
		for _, txn := range hs2Send.received() {
			pdus += len(txn.body.PDUs)
			edus += len(txn.body.EDUs)
		}
		return pdus == 1 && edus == 1
	})
	stored, _ := hs1.DB.EventByID(ctx, msg)
	var sawPDU, sawEDU bool
	for _, txn := range hs2Send.received() {
		if txn.origin != "hs1" || txn.body.Origin != "hs1" || txn.body.OriginServerTS == 0 || txn.id == "" {
			t.Fatalf("transaction %+v", txn)
		}
		for _, p := range txn.body.PDUs {
			sawPDU = sawPDU || string(p) == string(stored.JSON)
		}
		for _, e := range txn.body.EDUs {
			sawEDU = sawEDU || (e.Type == "m.direct_to_device" && e.Origin == "hs1" && e.Destination == "hs2")
		}
	}
	if !sawPDU || !sawEDU {
		t.Fatalf("hs2 did not get the stored event (%v) or the EDU (%v)", sawPDU, sawEDU)
	}

	// A 500 backs off and retries the same transaction.
	hs2Send.answer(http.StatusInternalServerError)
	before := len(hs2Send.received())
	sendText(t, hs1.Rooms, room, alice, "through a failure")
	waitFor(t, "a failed attempt", func() bool { return len(hs2Send.received()) >= before+1 })
	hs2Send.answer(http.StatusOK)
	waitFor(t, "the retry", func() bool { return drained(hs1.DB, "hs2") })
	got := hs2Send.received()[before:]
	if len(got) < 2 || got[len(got)-1].id != got[0].id {
		t.Fatalf("retries went as %d transactions, first %q, last %q", len(got), got[0].id, got[len(got)-1].id)
	}

	// A 400 drops the transaction; the destination is not backed off.
	hs2Send.answer(http.StatusBadRequest)
	before = len(hs2Send.received())
	sendText(t, hs1.Rooms, room, alice, "refused")
	waitFor(t, "the refusal", func() bool { return len(hs2Send.received()) > before && drained(hs1.DB, "hs2") })
	if got := len(hs2Send.received()) - before; got != 1 {
		t.Fatalf("a refused transaction was sent %d times", got)
	}
	if st, _ := hs1.DB.FederationDestination(ctx, "hs2"); st.Failures != 0 {
		t.Fatalf("hs2 backed off after a refusal: %+v", st)
	}
}

func drained(db *storage.DB, dest string) bool {
	p, e, err := db.FederationQueueCounts(context.Background(), dest)
	return err == nil && p == 0 && e == 0
}

func sendText(t *testing.T, rs *roomserver.Roomserver, room, sender, body string) string {
	t.Helper()
	content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": body})
	sent, err := rs.Send(context.Background(), roomserver.LocalEvent{RoomID: room, Sender: sender, Type: "m.room.message", Content: content})
	if err != nil {
		t.Fatal(err)
	}
	return sent.EventID
}

// joinEvent builds user's join on the room's current state, signed by
// srv, and inputs it into rs as an event from srv.
func joinEvent(t *testing.T, db *storage.DB, rs *roomserver.Roomserver, srv *fedtest.Server, room, user string) {
	t.Helper()
	ctx := context.Background()
	info, err := db.Room(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersion(info.Version))
	stored, err := db.CurrentStateEvents(ctx, info.NID, "")
	if err != nil {
		t.Fatal(err)
	}
	var state []gomatrixserverlib.PDU
	for _, e := range stored {
		pdu, err := ver.NewEventFromTrustedJSONWithEventID(e.EventID, e.JSON, false)
		if err != nil {
			t.Fatal(err)
		}
		state = append(state, pdu)
	}
	proto := gomatrixserverlib.ProtoEvent{SenderID: user, RoomID: room, Type: spec.MRoomMember, StateKey: &user,
		Content: spec.RawJSON(`{"membership":"join"}`), PrevEvents: info.Extremities, Depth: info.MaxDepth + 1}
	b := ver.NewEventBuilderFromProtoEvent(&proto)
	provider, err := gomatrixserverlib.NewAuthEvents(state)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddAuthEvents(provider); err != nil {
		t.Fatal(err)
	}
	pdu, err := b.Build(time.Now(), srv.Name, srv.Federation.Own.KeyID, srv.Federation.Own.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	res, err := rs.Input(ctx, []roomserver.InputEvent{{Kind: roomserver.KindNew, Event: pdu, Origin: srv.Name}})
	if err != nil || res[0].Err != nil || res[0].Status != roomserver.StatusAccepted {
		t.Fatalf("input of %s's join: %+v, %v", user, res, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
