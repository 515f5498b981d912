package fedinbound

// FuzzSendTransaction sends transactions of any JSON, signed by hs1, to
// hs2 (which shares a room with it) and fails on any 5xx or on a 4xx
// without a Matrix error. Its seed corpus runs with the suite; to fuzz:
//
//	go test -tags goolm ./tests/fedinbound -run x -fuzz FuzzSendTransaction -fuzztime 10m

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func FuzzSendTransaction(f *testing.F) {
	s := newShared(f, nil)
	m := s.alice.Send(f, s.roomID, "seed")
	pdu := string(s.hs1.StoredJSON(f, m))
	bad := strings.Replace(pdu, `"seed"`, `"changed"`, 1)
	for _, seed := range []string{
		`{"origin":"hs1","origin_server_ts":1,"pdus":[` + pdu + `]}`,
		`{"pdus":[` + bad + `],"edus":[{"edu_type":"m.typing","content":{}}]}`,
		`{"pdus":[` + pdu + `,` + pdu + `,{"room_id":"` + s.roomID + `"},{"room_id":"` + s.roomID + `","content":0}]}`,
		`{"pdus":[{"room_id":"!unknown:hs1","type":"m.room.create","state_key":"","content":0}]}`,
		`{"pdus":{}}`, `{"edus":"x"}`, `[]`, `{}`, `null`,
	} {
		f.Add([]byte(seed))
	}
	n := 0
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return // a body that is not JSON cannot be signed
		}
		n++
		req := s.hs1.SignedRequest(t, "PUT", s.hs2.Name, fmt.Sprintf("/_matrix/federation/v1/send/fuzz%d", n), json.RawMessage(body))
		status, raw := s.hs1.Send(t, req)
		switch {
		case status >= 500:
			t.Fatalf("%d %s for %s", status, raw, body)
		case status >= 400 && errcode(raw) == "":
			t.Fatalf("%d without a Matrix error (%s) for %s", status, raw, body)
		case status == 200:
			var ans struct {
				PDUs map[string]json.RawMessage `json:"pdus"`
			}
			if err := json.Unmarshal(raw, &ans); err != nil || ans.PDUs == nil {
				t.Fatalf("answer %s for %s", raw, body)
			}
		}
	})
}
