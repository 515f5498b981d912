package e2ee

import (
	"context"

	"matrixhs/storage"
)

// What sync delivers of end-to-end encryption, for one device.

// AckToDevice deletes the device's to-device messages the client has
// acknowledged: those at or before upTo, the position its sync token names.
func (s *Service) AckToDevice(ctx context.Context, d Device, upTo int64) error {
	if upTo <= 0 {
		return nil
	}
	has, err := s.db.HasToDeviceUpTo(ctx, d.UserID, d.DeviceID, upTo)
	if err != nil || !has {
		return err
	}
	return s.db.Write(ctx, func(tx *storage.Tx) error { return tx.DeleteToDeviceUpTo(ctx, d.UserID, d.DeviceID, upTo) })
}

// ToDevice returns the device's messages queued in (from, to], oldest
// first, at most limit of them (negative: all).
func (s *Service) ToDevice(ctx context.Context, d Device, from, to int64, limit int) ([]storage.ToDeviceEvent, error) {
	return s.db.ToDeviceMessagesLimit(ctx, d.UserID, d.DeviceID, from, to, limit)
}

// KeyCounts are the device's unclaimed one-time keys by algorithm (with
// signed_curve25519 always present) and the algorithms of its unused
// fallback keys.
func (s *Service) KeyCounts(ctx context.Context, d Device) (map[string]int, []string, error) {
	counts, fallback, err := s.db.DeviceKeyCounts(ctx, d.UserID, d.DeviceID)
	if err != nil {
		return nil, nil, err
	}
	return withZeroCount(counts), fallback, nil
}

// KeyCountsChanged reports whether keys of the device were claimed in
// (from, to].
func (s *Service) KeyCountsChanged(ctx context.Context, d Device, from, to int64) (bool, error) {
	return s.db.KeyCountsChanged(ctx, d.UserID, d.DeviceID, from, to)
}
