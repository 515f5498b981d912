package syncapi

import (
	"context"

	"matrixhs/internal/e2ee"
	"matrixhs/storage"
)

// syncE2EE fills in the end-to-end encryption parts of a /sync response
// for the range (since, upTo] (since 0: initial sync): to_device,
// device_lists, device_one_time_keys_count and
// device_unused_fallback_key_types, all always present. To-device messages
// the client acknowledged by syncing with since (positions <= since) are
// deleted first. changed reports that there are new to-device messages,
// device-list changes or claims of the device's keys.
func (a *API) syncE2EE(ctx context.Context, dev e2ee.Device, since, upTo int64, resp *Response) (changed bool, err error) {
	if err := a.keys.AckToDevice(ctx, dev, min(since, upTo)); err != nil {
		return false, err
	}
	msgs, err := a.keys.ToDevice(ctx, dev, since, upTo, -1)
	if err != nil {
		return false, err
	}
	resp.ToDevice.Events = toDeviceEvents(msgs)
	lists := DeviceLists{Changed: []string{}, Left: []string{}}
	countsChanged := false
	if since > 0 {
		if lists.Changed, lists.Left, err = a.keys.DeviceListChanges(ctx, dev.UserID, since, upTo); err != nil {
			return false, err
		}
		if countsChanged, err = a.keys.KeyCountsChanged(ctx, dev, since, upTo); err != nil {
			return false, err
		}
	}
	resp.DeviceLists = lists
	if resp.OneTimeKeysCount, resp.UnusedFallbackKeyTypes, err = a.keys.KeyCounts(ctx, dev); err != nil {
		return false, err
	}
	changed = len(msgs) > 0 || len(lists.Changed) > 0 || len(lists.Left) > 0 || countsChanged
	return changed, nil
}

// toDeviceEvents are queued messages as sync delivers them (never nil).
func toDeviceEvents(msgs []storage.ToDeviceEvent) []ToDeviceEvent {
	out := make([]ToDeviceEvent, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, ToDeviceEvent{Type: m.Type, Sender: m.Sender, Content: m.Content})
	}
	return out
}
