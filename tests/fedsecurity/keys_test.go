package fedsecurity

import (
	"net/http"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"matrixhs/tests/fedtest"
)

// TestRotatedKeyAndWrongOrigin: hs1 changes its signing key. hs2 (which
// learns of the change from hs1's next request) takes an event signed with
// the old key while it was hs1's, but not one signed with it for a time
// after it expired. A transaction whose X-Matrix header names another
// origin than the server that signed it is refused whole, whichever of the
// two names the other, and nothing of it is stored or shown.
func TestRotatedKeyAndWrongOrigin(t *testing.T) {
	nw := newNetwork(t)
	v := newVictim(t, nw, "12")
	old := nw.hs1.Signer()
	beforeRotation := v.build(t, old, fedtest.Message(v.alice.ID, "signed while the key was current"))
	nw.hs1.RotateKey()

	late := fedtest.Message(v.alice.ID, "signed with the old key after it expired")
	late.TS = time.Now().Add(time.Second)
	afterExpiry := v.build(t, old, late)
	current := v.build(t, nw.hs1.Signer(), fedtest.Message(v.alice.ID, "signed with the new key"))
	status, ans := fedtest.SendTxn(t, nw.hs1, nw.hs2.Name, "rotated", fedtest.JSONs(beforeRotation, afterExpiry, current), nil)
	if status != 200 {
		t.Fatalf("send: %d %s", status, ans.Raw)
	}
	ans.OK(t, beforeRotation.EventID(), current.EventID())
	ans.Refused(t, afterExpiry.EventID(), "signature")
	if st := nw.hs2.Status(afterExpiry.EventID()); st != -1 {
		t.Fatalf("event signed with an expired key stored with status %d", st)
	}

	// hs1 signs a request claiming to be hs3, and hs3 one claiming to be
	// hs1: each carries an event hs1 signed properly.
	own, third := nw.hs1.Federation.Own, nw.hs3.Federation.Own
	var smuggled []gomatrixserverlib.PDU
	for name, sign := range map[string]func(body any) *http.Request{
		"hs1 as hs3": func(body any) *http.Request {
			return fedtest.SignedAs(t, "hs3", own.KeyID, own.PrivateKey, "PUT", nw.hs2.Name, "/_matrix/federation/v1/send/as-hs3", body)
		},
		"hs3 as hs1": func(body any) *http.Request {
			return fedtest.SignedAs(t, "hs1", third.KeyID, third.PrivateKey, "PUT", nw.hs2.Name, "/_matrix/federation/v1/send/as-hs1", body)
		},
	} {
		pdu := v.build(t, nw.hs1.Signer(), fedtest.Message(v.alice.ID, "smuggled: "+name))
		smuggled = append(smuggled, pdu)
		body := map[string]any{"origin": "hs1", "origin_server_ts": time.Now().UnixMilli(), "pdus": fedtest.JSONs(pdu)}
		if status, raw := nw.hs1.Send(t, sign(body)); status != http.StatusUnauthorized || errcode(raw) != "M_UNAUTHORIZED" {
			t.Errorf("%s: %d %s, want 401 M_UNAUTHORIZED", name, status, raw)
		}
		if st := nw.hs2.Status(pdu.EventID()); st != -1 {
			t.Errorf("%s: the event was stored (status %d)", name, st)
		}
	}
	v.checkInvisible(t, append(smuggled, afterExpiry), []gomatrixserverlib.PDU{beforeRotation, current})
}
