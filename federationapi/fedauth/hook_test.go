package fedauth

import (
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestOnAuthenticated: the hook (the sender's ResetBackoff) is told of the
// origin of each request that passes, and of none that fails.
func TestOnAuthenticated(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, stranger, _ := ed25519.GenerateKey(nil)
	auth := New("dest.test", staticKeys{"origin.test": {"ed25519:o": pub}}, nil)
	var told []spec.ServerName
	auth.OnAuthenticated(func(origin spec.ServerName) { told = append(told, origin) })
	f := &authFixture{priv: priv}
	f.srv = httptest.NewServer(auth.Handler(func(*http.Request, spec.ServerName) (any, error) { return struct{}{}, nil }))
	t.Cleanup(f.srv.Close)
	for _, key := range []ed25519.PrivateKey{priv, stranger, priv} {
		resp, err := http.DefaultClient.Do(f.signed(t, "GET", "/x", nil, "origin.test", "dest.test", key))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if len(told) != 2 || told[0] != "origin.test" || told[1] != "origin.test" {
		t.Fatalf("hook told of %v, want origin.test twice", told)
	}
}
