package server

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestUnreachableName(t *testing.T) {
	for name, want := range map[string]bool{
		"matrix.local": true, "localhost": true, "localhost:8448": true, "foo.localhost": true, "127.0.0.1:8008": true,
		"[::1]:8448": true, "hs.test": true, "example.org": false, "example.org:8448": false, "hs1": false,
		"10.0.0.5:8448": false, "[2001:db8::1]:8448": false,
	} {
		if got := unreachableName(name); got != want {
			t.Errorf("unreachableName(%q) = %v, want %v", name, got, want)
		}
	}
}

// The default name (matrix.local) gets the hint once at start; a real
// domain does not.
func TestFederationHintLoggedOnceForUnreachableNames(t *testing.T) {
	for name, want := range map[string]int{"matrix.local": 1, "example.org": 0} {
		cfg := loadTestConfig(t, t.TempDir())
		cfg.Server.Name = name
		var out bytes.Buffer
		s, err := New(context.Background(), cfg, Options{LogOutput: &out})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Listen(""); err != nil {
			t.Fatal(err)
		}
		s.Shutdown(context.Background())
		if got := strings.Count(out.String(), "cannot federate"); got != want {
			t.Errorf("%s: hint logged %d times, want %d", name, got, want)
		}
	}
}
