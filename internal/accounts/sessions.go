package accounts

import (
	"context"
	"errors"
	"time"

	"matrixhs/storage"
)

// lastSeenInterval bounds last-seen writes: once per device per interval.
const lastSeenInterval = 5 * time.Minute

// Login is what a successful login or registration hands back.
type Login struct {
	UserID       string `json:"user_id"`
	AccessToken  string `json:"access_token,omitempty"`
	DeviceID     string `json:"device_id,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresInMS  int64  `json:"expires_in_ms,omitempty"`
	HomeServer   string `json:"home_server,omitempty"`
}

// NewDevice describes the device a login creates or takes over.
type NewDevice struct {
	DeviceID    string // "" for a fresh random ID
	DisplayName string
	IP          string
	Refresh     bool // issue an expiring access token with a refresh token
}

func (s *Service) newTokens(refresh bool) (access, refreshTok string, t storage.DeviceTokens, expiresIn time.Duration) {
	access = randomToken("mat_", 32)
	t.AccessHash = hashToken(access)
	if refresh {
		refreshTok = randomToken("mrt_", 32)
		t.RefreshHash = hashToken(refreshTok)
		expiresIn = s.refreshLifetime
		t.AccessExpiresTS = s.now().Add(expiresIn).UnixMilli()
	}
	return access, refreshTok, t, expiresIn
}

// createDevice adds (or takes over) a device for userID inside tx. A reused
// device ID replaces the old token.
func (s *Service) createDevice(ctx context.Context, tx *storage.Tx, userID string, d NewDevice) (*Login, error) {
	if d.DeviceID == "" {
		d.DeviceID = NewDeviceID()
	}
	if len(d.DeviceID) > 255 {
		return nil, refuse(ErrInvalidDeviceID, "device_id is longer than 255 bytes")
	}
	// Spec: initial_device_display_name is ignored for a known device.
	if d.DisplayName != "" {
		if _, err := tx.Device(ctx, userID, d.DeviceID); err == nil {
			d.DisplayName = ""
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
	}
	access, refresh, tokens, expiresIn := s.newTokens(d.Refresh)
	err := tx.UpsertDevice(ctx, storage.Device{
		UserID: userID, DeviceID: d.DeviceID, DisplayName: d.DisplayName,
		CreatedTS: s.now().UnixMilli(), LastSeenIP: d.IP,
	}, tokens)
	if err != nil {
		return nil, err
	}
	return &Login{
		UserID: userID, AccessToken: access, DeviceID: d.DeviceID, RefreshToken: refresh,
		ExpiresInMS: expiresIn.Milliseconds(), HomeServer: s.serverName,
	}, nil
}

// LoginWithPassword checks the password and creates a device.
func (s *Service) LoginWithPassword(ctx context.Context, user, password string, d NewDevice) (*Login, error) {
	localpart, err := s.ParseLocalUser(user)
	if err != nil {
		if errors.Is(err, ErrInvalidUsername) {
			return nil, refuse(ErrBadLogin, "Invalid username or password")
		}
		return nil, err
	}
	acc, err := s.CheckPassword(ctx, s.UserID(localpart), password)
	if err != nil {
		return nil, err
	}
	return s.LoginUser(ctx, acc.UserID, d)
}

// LoginUser creates a device for an already authenticated user.
func (s *Service) LoginUser(ctx context.Context, userID string, d NewDevice) (*Login, error) {
	var out *Login
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		var err error
		out, err = s.createDevice(ctx, tx, userID, d)
		return err
	})
	return out, err
}

// Authenticate resolves an access token to its session. Expired refreshable
// tokens are a soft logout.
func (s *Service) Authenticate(ctx context.Context, token string) (*Session, error) {
	o, err := s.db.TokenOwner(ctx, hashToken(token))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, refuse(ErrUnknownToken, "Unknown access token")
	}
	if err != nil {
		return nil, err
	}
	if o.Deactivated {
		return nil, refuse(ErrUnknownToken, "Account deactivated")
	}
	if o.AccessExpiresTS != 0 && s.now().UnixMilli() >= o.AccessExpiresTS {
		return nil, refuse(ErrExpiredToken, "Access token has expired")
	}
	if o.HasPrevRefresh {
		// The new access token is in use: the refresh token it replaced is done.
		err := s.db.Write(ctx, func(tx *storage.Tx) error { return tx.RevokePrevRefreshToken(ctx, o.UserID, o.DeviceID) })
		if err != nil {
			return nil, err
		}
	}
	return &Session{UserID: o.UserID, DeviceID: o.DeviceID, IsAdmin: o.IsAdmin, ExpiresTS: o.AccessExpiresTS,
		ShadowBanned: o.ShadowBanned, Locked: o.Locked, Suspended: o.Suspended}, nil
}

// Touch records that a session was used from ip, at most once per interval.
func (s *Service) Touch(ctx context.Context, sess *Session, ip string) {
	key := sess.UserID + "|" + sess.DeviceID
	now := s.now()
	s.mu.Lock()
	last, ok := s.lastSeen[key]
	if ok && now.Sub(last) < lastSeenInterval {
		s.mu.Unlock()
		return
	}
	s.lastSeen[key] = now
	s.mu.Unlock()
	// Best effort: last-seen data is informational.
	_ = s.db.Write(context.WithoutCancel(ctx), func(tx *storage.Tx) error {
		return tx.TouchDevice(ctx, sess.UserID, sess.DeviceID, now.UnixMilli(), ip)
	})
}

// Refresh swaps a refresh token for a new access and refresh token pair.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*Login, error) {
	var out *Login
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		dev, err := tx.DeviceByRefreshToken(ctx, hashToken(refreshToken))
		if errors.Is(err, storage.ErrNotFound) {
			return refuse(ErrUnknownRefreshToken, "Unknown refresh token")
		}
		if err != nil {
			return err
		}
		access, refresh, tokens, expiresIn := s.newTokens(true)
		if err := tx.RefreshDeviceTokens(ctx, dev.UserID, dev.DeviceID, hashToken(refreshToken), tokens); err != nil {
			return err
		}
		out = &Login{UserID: dev.UserID, AccessToken: access, RefreshToken: refresh, ExpiresInMS: expiresIn.Milliseconds()}
		return nil
	})
	return out, err
}

// DeleteDevices removes devices (and so their tokens); nil ids with keep
// removes all devices but keep. It returns the IDs removed.
func (s *Service) DeleteDevices(ctx context.Context, userID string, ids []string, keep string) ([]string, error) {
	var deleted []string
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		var err error
		deleted, err = s.deleteDevices(ctx, tx, userID, ids, keep)
		return err
	})
	return deleted, err
}

func (s *Service) deleteDevices(ctx context.Context, tx *storage.Tx, userID string, ids []string, keep string) ([]string, error) {
	return tx.DeleteDevices(ctx, userID, ids, keep)
}

// Devices lists a user's devices.
func (s *Service) Devices(ctx context.Context, userID string) ([]storage.Device, error) {
	return s.db.Devices(ctx, userID)
}

// ChangePassword sets a new password; with logoutDevices every device but
// keep is logged out, in the same transaction.
func (s *Service) ChangePassword(ctx context.Context, userID, newPassword string, logoutDevices bool, keep string) error {
	hash, err := s.HashPassword(newPassword)
	if err != nil {
		return err
	}
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		if err := tx.SetPasswordHash(ctx, userID, hash); err != nil {
			return err
		}
		if logoutDevices {
			_, err := s.deleteDevices(ctx, tx, userID, nil, keep)
			return err
		}
		return nil
	})
}

// Deactivate disables an account for good and logs out all its devices.
func (s *Service) Deactivate(ctx context.Context, userID string, erase bool) error {
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		if err := tx.Deactivate(ctx, userID, erase); err != nil {
			return err
		}
		_, err := s.deleteDevices(ctx, tx, userID, nil, "")
		return err
	})
}

// SetAdmin grants or revokes admin rights.
func (s *Service) SetAdmin(ctx context.Context, userID string, admin bool) error {
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		return tx.SetAdmin(ctx, userID, admin)
	})
}

// LoginAs opens a session of userID for an admin (Synapse's login as a
// user): its access token, which expires at untilMS (0: never). The
// session is not in the user's device list and ends with the admin's
// logout of all their devices.
func (s *Service) LoginAs(ctx context.Context, userID, adminID string, untilMS int64) (string, error) {
	access, _, tokens, _ := s.newTokens(false)
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		return tx.InsertPuppetDevice(ctx, userID, NewDeviceID(), adminID, tokens.AccessHash, untilMS, s.now().UnixMilli())
	})
	if err != nil {
		return "", err
	}
	return access, nil
}
