package accounts

import (
	"context"
	"errors"
	"matrixhs/internal/dbtest"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func testService(t testing.TB, cost int) *Service {
	t.Helper()
	db, err := dbtest.Open(t, context.Background(), filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return New(db, Options{ServerName: "hs.test", BcryptCost: cost})
}

// Unknown, deactivated and password-less accounts fail exactly like a wrong
// password: the same 403, after one bcrypt comparison at the configured
// cost (the old code compared against a minimum-cost hash, or not at all,
// so timing told which accounts exist).
func TestCheckPasswordFailuresLookAlike(t *testing.T) {
	const cost = 6
	ctx := context.Background()
	s := testService(t, cost)
	for _, r := range []Registration{
		{Localpart: "alice", Password: "right"},
		{Localpart: "gone", Password: "right"},
		{Localpart: "nopass", NoPassword: true},
	} {
		r.InhibitLogin = true
		if _, err := s.Register(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Deactivate(ctx, s.UserID("gone"), false); err != nil {
		t.Fatal(err)
	}
	var costs []int
	s.checkHash = func(hash, password string) bool {
		c, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			c = -1
		}
		costs = append(costs, c)
		return checkPassword(hash, password)
	}
	for _, tc := range []struct{ user, password string }{
		{"alice", "wrong"}, {"nobody", "right"}, {"gone", "right"}, {"nopass", ""}, {"nopass", "x"},
	} {
		costs = nil
		_, err := s.CheckPassword(ctx, s.UserID(tc.user), tc.password)
		if !errors.Is(err, ErrBadLogin) || err.Error() != "Invalid username or password" {
			t.Errorf("%s/%q: err = %v, want the common refusal", tc.user, tc.password, err)
		}
		if len(costs) != 1 || costs[0] != cost {
			t.Errorf("%s/%q: compared hashes of cost %v, want one of cost %d", tc.user, tc.password, costs, cost)
		}
	}
	if acc, err := s.CheckPassword(ctx, s.UserID("alice"), "right"); err != nil || acc.Localpart != "alice" {
		t.Fatalf("right password: %v", err)
	}
}

// BenchmarkCheckPassword shows that a known and an unknown user cost the
// same (bcrypt at cost 10, the default).
func BenchmarkCheckPassword(b *testing.B) {
	ctx := context.Background()
	s := testService(b, 10)
	if _, err := s.Register(ctx, Registration{Localpart: "alice", Password: "right", InhibitLogin: true}); err != nil {
		b.Fatal(err)
	}
	for _, user := range []string{"alice", "nobody"} {
		b.Run(user, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				s.CheckPassword(ctx, s.UserID(user), "wrong")
			}
		})
	}
}
