package syncapi

import (
	"context"
	"encoding/json"

	"matrixhs/internal/e2ee"
)

// syncE2EE builds the end-to-end encryption parts of a /sync response for
// the range (since, upTo] (since 0: initial sync): to_device, device_lists,
// device_one_time_keys_count and device_unused_fallback_key_types, all
// always present. To-device messages the client acknowledged by syncing
// with since (positions <= since) are deleted first. changed reports that
// there are new to-device messages, device-list changes or claims of the
// device's keys.
func (a *API) syncE2EE(ctx context.Context, userID, deviceID string, since, upTo int64) (out map[string]any, changed bool, err error) {
	dev := e2ee.Device{UserID: userID, DeviceID: deviceID}
	if err := a.keys.AckToDevice(ctx, dev, min(since, upTo)); err != nil {
		return nil, false, err
	}
	msgs, err := a.keys.ToDevice(ctx, dev, since, upTo, -1)
	if err != nil {
		return nil, false, err
	}
	events := make([]map[string]any, 0, len(msgs))
	for _, m := range msgs {
		events = append(events, map[string]any{"type": m.Type, "sender": m.Sender, "content": json.RawMessage(m.Content)})
	}
	changedUsers, left := []string{}, []string{}
	countsChanged := false
	if since > 0 {
		if changedUsers, left, err = a.keys.DeviceListChanges(ctx, userID, since, upTo); err != nil {
			return nil, false, err
		}
		if countsChanged, err = a.keys.KeyCountsChanged(ctx, dev, since, upTo); err != nil {
			return nil, false, err
		}
	}
	counts, fallback, err := a.keys.KeyCounts(ctx, dev)
	if err != nil {
		return nil, false, err
	}
	out = map[string]any{
		"to_device":                        map[string]any{"events": events},
		"device_lists":                     map[string]any{"changed": changedUsers, "left": left},
		"device_one_time_keys_count":       counts,
		"device_unused_fallback_key_types": fallback,
	}
	changed = len(events) > 0 || len(changedUsers) > 0 || len(left) > 0 || countsChanged
	return out, changed, nil
}
