// Package accounts is the business logic of local accounts and their
// sessions: registration, password checks, devices and access tokens. The
// client API and the admin CLI both use it, so both enforce the same rules.
package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"matrixhs/storage"
)

// Service manages accounts, devices and access tokens.
type Service struct {
	db              *storage.DB
	serverName      string
	bcryptCost      int
	refreshLifetime time.Duration
	now             func() time.Time

	mu sync.Mutex
	// lastSeen throttles last-seen writes to one per device per interval.
	lastSeen map[string]time.Time

	// checkHash compares a password with a hash (tests observe it).
	checkHash func(hash, password string) bool
	dummyOnce sync.Once
	dummy     string
}

// Options configures a Service.
type Options struct {
	ServerName      string
	BcryptCost      int
	RefreshLifetime time.Duration
}

// New returns a Service on db.
func New(db *storage.DB, opts Options) *Service {
	return &Service{
		db:              db,
		serverName:      opts.ServerName,
		bcryptCost:      opts.BcryptCost,
		refreshLifetime: opts.RefreshLifetime,
		now:             time.Now,
		lastSeen:        make(map[string]time.Time),
		checkHash:       checkPassword,
	}
}

// ServerName is the domain of local users.
func (s *Service) ServerName() string { return s.serverName }

// Session is an authenticated device.
type Session struct {
	UserID    string
	DeviceID  string
	IsAdmin   bool
	ExpiresTS int64 // ms; 0 means the token never expires
	// What an admin set on the account: its sends go nowhere
	// (ShadowBanned), it may do nothing but log out (Locked), or only read
	// (Suspended).
	ShadowBanned, Locked, Suspended bool
	// AppServiceID is the appservice whose as_token authenticated the
	// session ("" for a user's own access token); DeviceID is then the
	// masqueraded device, or "".
	AppServiceID string
}

// UserID builds the full user ID of a local localpart.
func (s *Service) UserID(localpart string) string { return "@" + localpart + ":" + s.serverName }

// ParseLocalUser accepts "@alice:server" or "alice" and returns the lowercased
// localpart of a local user; a user of another server is M_FORBIDDEN.
func (s *Service) ParseLocalUser(id string) (string, error) {
	if strings.HasPrefix(id, "@") {
		local, domain, ok := strings.Cut(id[1:], ":")
		if !ok {
			return "", refuse(ErrInvalidUsername, "user ID %q has no server name", id)
		}
		if domain != s.serverName {
			return "", refuse(ErrNotLocal, "user %s is not a user of this server", id)
		}
		id = local
	}
	if id == "" {
		return "", refuse(ErrInvalidUsername, "empty user name")
	}
	return strings.ToLower(id), nil
}

// ValidateLocalpart enforces the spec's user ID grammar for new accounts.
func (s *Service) ValidateLocalpart(localpart string) error {
	if localpart == "" {
		return refuse(ErrInvalidUsername, "user name must not be empty")
	}
	for _, c := range localpart {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("._=-/+", c)) {
			return refuse(ErrInvalidUsername, "user name may contain only a-z, 0-9 and ._=-/+")
		}
	}
	if localpart[0] == '_' {
		return refuse(ErrInvalidUsername, "user names starting with _ are reserved")
	}
	if len(s.UserID(localpart)) > 255 {
		return refuse(ErrInvalidUsername, "user ID is longer than 255 bytes")
	}
	return nil
}

// bcrypt reads only 72 bytes: longer passwords are pre-hashed so every byte counts.
func passwordBytes(password string) []byte {
	if len(password) <= 72 {
		return []byte(password)
	}
	sum := sha256.Sum256([]byte(password))
	return []byte(base64.StdEncoding.EncodeToString(sum[:]))
}

// HashPassword hashes a new password after checking it is acceptable.
func (s *Service) HashPassword(password string) (string, error) {
	if password == "" {
		return "", refuse(ErrWeakPassword, "password must not be empty")
	}
	if len(password) > 1024 {
		return "", refuse(ErrWeakPassword, "password is longer than 1024 bytes")
	}
	h, err := bcrypt.GenerateFromPassword(passwordBytes(password), s.bcryptCost)
	if err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	return string(h), nil
}

func checkPassword(hash, password string) bool {
	return hash != "" && bcrypt.CompareHashAndPassword([]byte(hash), passwordBytes(password)) == nil
}

// CheckPassword verifies a local user's password. Every failure (unknown
// user, deactivated, no password, wrong password) is the same 403 after the
// same work, one bcrypt comparison at the configured cost, so neither the
// answer nor its timing tells whether an account exists. (Deactivation
// removes the password, so, as in Synapse, a deactivated account cannot be
// told apart either.)
func (s *Service) CheckPassword(ctx context.Context, userID, password string) (*storage.Account, error) {
	acc, err := s.db.Account(ctx, userID)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	usable := err == nil && !acc.Deactivated && acc.PasswordHash != ""
	hash := s.dummyHash()
	if usable {
		hash = acc.PasswordHash
	}
	if !s.checkHash(hash, password) || !usable {
		return nil, refuse(ErrBadLogin, "Invalid username or password")
	}
	return acc, nil
}

// dummyHash is a hash of a random password at the configured cost, compared
// against when there is no real hash to check.
func (s *Service) dummyHash() string {
	s.dummyOnce.Do(func() {
		// An error (only for an invalid cost, which config refuses) leaves
		// an empty hash, which still fails every check.
		h, _ := bcrypt.GenerateFromPassword([]byte(randomToken("", 16)), s.bcryptCost)
		s.dummy = string(h)
	})
	return s.dummy
}

func randomToken(prefix string, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// NewDeviceID returns a random device ID in the style clients expect.
func NewDeviceID() string {
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, 10)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.now() }
