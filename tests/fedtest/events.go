package fedtest

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver"
	"matrixhs/storage"
)

// Signer signs events as a server.
type Signer struct {
	Name  spec.ServerName
	KeyID gomatrixserverlib.KeyID
	Key   ed25519.PrivateKey
}

// Signer signs with s's current key.
func (s *Server) Signer() Signer {
	return Signer{Name: s.Name, KeyID: s.Federation.Own.KeyID, Key: s.Federation.Own.PrivateKey}
}

// ForgedSigner signs as s, under the ID of s's key, with a key that is not
// s's.
func (s *Server) ForgedSigner() Signer {
	_, key, _ := ed25519.GenerateKey(nil)
	return Signer{Name: s.Name, KeyID: s.Federation.Own.KeyID, Key: key}
}

// Proto is an event to build.
type Proto struct {
	Sender   string
	Type     string
	StateKey *string
	Content  any
	// Prevs default to the room's forward extremities on the server built
	// on; Auth to what the auth rules need from its current state.
	Prevs []string
	Auth  []string
	// Depth defaults to one more than the prev events' on the server built
	// on (set it for prev events that server does not hold).
	Depth int64
	// TS is the event's origin_server_ts (default: now).
	TS time.Time
}

// SK returns a pointer to a state key.
func SK(s string) *string { return &s }

// Message is a Proto of a text message.
func Message(sender, body string) Proto {
	return Proto{Sender: sender, Type: "m.room.message", Content: map[string]any{"msgtype": "m.text", "body": body}}
}

// Build builds and signs an event of the room on top of what server on
// holds (prev events, depth, auth events from its current state), as
// another server would.
func Build(t testing.TB, on *Server, by Signer, roomID string, p Proto) gomatrixserverlib.PDU {
	t.Helper()
	ctx := context.Background()
	info := on.Room(t, roomID)
	ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersion(info.Version))
	content, err := json.Marshal(p.Content)
	if err != nil {
		t.Fatal(err)
	}
	prevs := p.Prevs
	depth := info.MaxDepth + 1
	switch {
	case p.Depth > 0:
		depth = p.Depth
		if prevs == nil {
			prevs = info.Extremities
		}
	case prevs == nil:
		prevs = info.Extremities
	default:
		depth = 0
		for _, id := range prevs {
			depth = max(depth, on.PDU(t, id).Depth()+1)
		}
	}
	pe := gomatrixserverlib.ProtoEvent{SenderID: p.Sender, RoomID: roomID, Type: p.Type, StateKey: p.StateKey,
		Content: content, PrevEvents: prevs, Depth: depth}
	if p.Auth != nil {
		pe.AuthEvents = p.Auth
	} else {
		needed, err := gomatrixserverlib.StateNeededForProtoEvent(&pe)
		if err != nil {
			t.Fatal(err)
		}
		current, err := on.DB.CurrentStateEvents(ctx, info.NID, "")
		if err != nil {
			t.Fatal(err)
		}
		auth := []string{}
		for _, tuple := range needed.Tuples() {
			if tuple.EventType == spec.MRoomCreate && ver.DomainlessRoomIDs() {
				continue // v12 events name their create event by the room ID
			}
			for _, e := range current {
				if e.Type == tuple.EventType && *e.StateKey == tuple.StateKey {
					auth = append(auth, e.EventID)
				}
			}
		}
		pe.AuthEvents = auth
	}
	ts := p.TS
	if ts.IsZero() {
		ts = time.Now()
	}
	pdu, err := ver.NewEventBuilderFromProtoEvent(&pe).Build(ts, by.Name, by.KeyID, by.Key)
	if err != nil {
		t.Fatalf("building %s: %v", p.Type, err)
	}
	return pdu
}

// WithContent is an event's JSON with other content (and the same hashes
// and signatures, which then no longer match).
func WithContent(t testing.TB, eventJSON []byte, content any) json.RawMessage {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal(eventJSON, &ev); err != nil {
		t.Fatal(err)
	}
	ev["content"] = content
	out, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// JSONs lists the events' JSON.
func JSONs(pdus ...gomatrixserverlib.PDU) []json.RawMessage {
	out := make([]json.RawMessage, len(pdus))
	for i, p := range pdus {
		out[i] = p.JSON()
	}
	return out
}

// Room is the stored room.
func (s *Server) Room(t testing.TB, roomID string) *storage.Room {
	t.Helper()
	info, err := s.DB.Room(context.Background(), roomID)
	if err != nil {
		t.Fatalf("room %s on %s: %v", roomID, s.Name, err)
	}
	return info
}

// PDU reads a stored event.
func (s *Server) PDU(t testing.TB, eventID string) gomatrixserverlib.PDU {
	t.Helper()
	e, err := s.DB.EventByID(context.Background(), eventID)
	if err != nil {
		t.Fatalf("event %s on %s: %v", eventID, s.Name, err)
	}
	pdu, err := roomserver.ParseEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	return pdu
}

// StoredJSON is an event's JSON as s stores it.
func (s *Server) StoredJSON(t testing.TB, eventID string) json.RawMessage {
	t.Helper()
	e, err := s.DB.EventByID(context.Background(), eventID)
	if err != nil {
		t.Fatalf("event %s on %s: %v", eventID, s.Name, err)
	}
	return e.JSON
}

// Status is an event's stored status on s (storage.EventAccepted …), -1
// when s does not hold it.
func (s *Server) Status(eventID string) int {
	e, err := s.DB.EventByID(context.Background(), eventID)
	if err != nil {
		return -1
	}
	return e.Status
}

// StateID is the ID of the current state event (typ, key) on s ("" when
// there is none).
func (s *Server) StateID(t testing.TB, roomID, typ, key string) string {
	t.Helper()
	events, err := s.DB.CurrentStateEvents(context.Background(), s.Room(t, roomID).NID, typ)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if *e.StateKey == key {
			return e.EventID
		}
	}
	return ""
}

// SendTxn sends a transaction from one server to another, signed by the
// sender, and returns the status and the answer.
func SendTxn(t testing.TB, from *Server, to spec.ServerName, txnID string, pdus []json.RawMessage, edus []any) (int, TxnAnswer) {
	t.Helper()
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	body := map[string]any{"origin": from.Name, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus}
	if edus != nil {
		body["edus"] = edus
	}
	status, raw := from.Send(t, from.SignedRequest(t, "PUT", to, "/_matrix/federation/v1/send/"+url.PathEscape(txnID), body))
	ans := TxnAnswer{Raw: raw}
	if status == 200 {
		if err := json.Unmarshal(raw, &ans); err != nil {
			t.Fatalf("transaction answer %s: %v", raw, err)
		}
	}
	return status, ans
}

// TxnAnswer is the answer to a transaction.
type TxnAnswer struct {
	PDUs map[string]struct {
		Error string `json:"error"`
	} `json:"pdus"`
	Raw []byte `json:"-"`
}

// OK fails unless every PDU named was taken without error.
func (a TxnAnswer) OK(t testing.TB, ids ...string) {
	t.Helper()
	for _, id := range ids {
		res, found := a.PDUs[id]
		if !found || res.Error != "" {
			t.Fatalf("PDU %s: %s", id, a.Raw)
		}
	}
}

// Refused fails unless the PDU has an error containing want.
func (a TxnAnswer) Refused(t testing.TB, id, want string) {
	t.Helper()
	if res := a.PDUs[id]; !strings.Contains(res.Error, want) || res.Error == "" {
		t.Fatalf("PDU %s: want an error with %q: %s", id, want, a.Raw)
	}
}
