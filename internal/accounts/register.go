package accounts

import (
	"context"
	"errors"

	"matrixhs/storage"
)

// Registration is a request to create a local account.
type Registration struct {
	Localpart   string
	Password    string
	Admin       bool
	DisplayName string // defaults to the localpart, as clients expect
	// RegistrationToken, when set, is counted as used in the same transaction.
	RegistrationToken string
	// InhibitLogin creates the account without a device.
	InhibitLogin bool
	// NoPassword creates an account nobody can log in to with a password
	// (the admin API allows it; an admin sets one later).
	NoPassword bool
	Device     NewDevice
}

// Available reports whether a localpart is valid and free.
func (s *Service) Available(ctx context.Context, localpart string) error {
	if err := s.ValidateLocalpart(localpart); err != nil {
		return err
	}
	_, err := s.db.Account(ctx, s.UserID(localpart))
	if err == nil {
		return refuse(ErrUserInUse, "User ID already taken")
	}
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

// Register creates an account (and, unless inhibited, a device) atomically.
func (s *Service) Register(ctx context.Context, r Registration) (*Login, error) {
	if err := s.ValidateLocalpart(r.Localpart); err != nil {
		return nil, err
	}
	hash := ""
	var err error
	if !r.NoPassword {
		if hash, err = s.HashPassword(r.Password); err != nil {
			return nil, err
		}
	}
	if r.DisplayName == "" {
		r.DisplayName = r.Localpart
	}
	userID := s.UserID(r.Localpart)
	out := &Login{UserID: userID, HomeServer: s.serverName}
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		if r.RegistrationToken != "" {
			if err := tx.UseRegistrationToken(ctx, r.RegistrationToken, s.now().UnixMilli()); err != nil {
				if errors.Is(err, storage.ErrTokenUnusable) {
					return refuse(ErrRegistrationToken, "registration token is unknown, used up or expired")
				}
				return err
			}
		}
		err := tx.InsertAccount(ctx, storage.Account{
			UserID: userID, Localpart: r.Localpart, PasswordHash: hash, IsAdmin: r.Admin,
			CreatedTS: s.now().UnixMilli(), DisplayName: r.DisplayName,
		})
		if errors.Is(err, storage.ErrExists) {
			return refuse(ErrUserInUse, "User ID already taken")
		}
		if err != nil {
			return err
		}
		if r.InhibitLogin {
			return nil
		}
		login, err := s.createDevice(ctx, tx, userID, r.Device)
		if err != nil {
			return err
		}
		out = login
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
