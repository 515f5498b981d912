package federationapi

// Fuzz targets for what the server parses of inbound transactions before
// the pipeline sees it (tests/fedinbound fuzzes whole transactions through
// a server). The seed corpora run with the suite; to fuzz:
//
//	go test -tags goolm ./federationapi -run x -fuzz FuzzTransactionBody -fuzztime 10m
//	go test -tags goolm ./federationapi -run x -fuzz FuzzPDU -fuzztime 10m

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"

	"matrixhs/internal/httputil"
)

const seedPDU = `{"auth_events":["$a","$b"],"content":{"body":"hi","msgtype":"m.text"},"depth":7,` +
	`"hashes":{"sha256":"H0zB4QvFxZ6VwU2a4cU9fW9s3gM5Jc2mQ0tV3C4n1bQ"},"origin_server_ts":1700000000000,` +
	`"prev_events":["$p"],"room_id":"!room:hs1","sender":"@alice:hs1",` +
	`"signatures":{"hs1":{"ed25519:k":"c2lnbmF0dXJl"}},"type":"m.room.message"}`

// FuzzTransactionBody: a transaction body of any bytes is decoded or
// refused with a Matrix error, never a panic; what is decoded stays within
// what it was given.
func FuzzTransactionBody(f *testing.F) {
	for _, seed := range []string{
		`{"origin":"hs1","origin_server_ts":1,"pdus":[` + seedPDU + `],"edus":[{"edu_type":"m.typing","content":{"room_id":"!r:hs1","typing":true}}]}`,
		`{"pdus":[],"edus":[]}`,
		`{"pdus":null}`,
		`{"pdus":{}}`,
		`{"pdus":[1,"x",null,{},[]],"edus":[1,{"edu_type":3},{"edu_type":"m.x","content":[]}]}`,
		`[]`, `null`, `{`, ``, `{"pdus":[{"room_id":5}]}`,
		`{"pdus":[{"room_id":"!r:hs1","event_id":"$x"}]}`,
		// gomatrixserverlib panics computing this one's ID.
		`{"pdus":[{"room_id":"!r:hs1","tYpe":"m.room.create","stAte_keY":"","Content":0,"content":0}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var txn txnBody
		if err := httputil.Unmarshal(body, &txn); err != nil {
			if _, ok := err.(*httputil.Error); !ok {
				t.Fatalf("decoding error %T is not a Matrix error: %v", err, err)
			}
			return
		}
		edus, malformed := parseEDUs(txn.EDUs)
		if len(edus)+malformed != len(txn.EDUs) {
			t.Fatalf("%d EDUs and %d malformed of %d", len(edus), malformed, len(txn.EDUs))
		}
		for _, edu := range edus {
			if edu.Type == "" || !bytes.HasPrefix(bytes.TrimSpace(edu.Content), []byte("{")) {
				t.Fatalf("EDU %+v passed", edu)
			}
		}
		for _, raw := range txn.PDUs {
			if id, ok := pduRoomID(raw); ok && (len(id) > 255 || id[0] != '!') {
				t.Fatalf("room ID %q accepted", id)
			}
			guessEventID(raw)
		}
	})
}

// FuzzPDU: a PDU of any bytes is parsed (or refused) by every room version
// without a panic, and its event ID, when one can be given, is that of the
// parsed event.
func FuzzPDU(f *testing.F) {
	f.Add([]byte(seedPDU))
	f.Add([]byte(`{"type":"m.room.create","state_key":"","content":{"room_version":"12"},"sender":"@a:hs1","depth":1,` +
		`"prev_events":[],"auth_events":[],"origin_server_ts":1,"hashes":{"sha256":"x"},"signatures":{}}`))
	f.Add([]byte(`{"event_id":"$old:hs1","room_id":"!r:hs1","type":"m.room.message","prev_events":[["$p:hs1",{"sha256":"x"}]]}`))
	f.Add([]byte(`{"room_id":"!r:hs1","depth":1e400,"content":{"a":1.5}}`))
	f.Add([]byte(`{"tYpe":"m.room.create","stAte_keY":"","Content":0}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		for _, v := range []gomatrixserverlib.RoomVersion{
			gomatrixserverlib.RoomVersionV1, gomatrixserverlib.RoomVersionV3, gomatrixserverlib.RoomVersionV4,
			gomatrixserverlib.RoomVersionV10, gomatrixserverlib.RoomVersionV11, gomatrixserverlib.RoomVersionV12,
		} {
			ver := gomatrixserverlib.MustGetRoomVersion(v)
			pdu, err := ver.NewEventFromUntrustedJSON(raw)
			id, idOK := eventIDIn(ver, raw)
			if err != nil || pdu.Redacted() || v == gomatrixserverlib.RoomVersionV1 {
				continue
			}
			if !idOK || id != pdu.EventID() {
				t.Fatalf("v%s: event ID %q (%v) for an event parsed as %s", v, id, idOK, pdu.EventID())
			}
		}
	})
}
