package clientapi

import (
	"errors"
	"net/http"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

type deviceJSON struct {
	DeviceID    string  `json:"device_id"`
	DisplayName *string `json:"display_name,omitempty"`
	LastSeenIP  *string `json:"last_seen_ip,omitempty"`
	LastSeenTS  *int64  `json:"last_seen_ts,omitempty"`
}

func toDeviceJSON(d storage.Device) deviceJSON {
	out := deviceJSON{DeviceID: d.DeviceID}
	if d.DisplayName != "" {
		out.DisplayName = &d.DisplayName
	}
	if d.LastSeenIP != "" {
		out.LastSeenIP = &d.LastSeenIP
	}
	if d.LastSeenTS != 0 {
		out.LastSeenTS = &d.LastSeenTS
	}
	return out
}

// listDevices serves GET /_matrix/client/v3/devices.
func (a *API) listDevices(r *http.Request, s *accounts.Session) (any, error) {
	devs, err := a.accounts.Devices(r.Context(), s.UserID)
	if err != nil {
		return nil, err
	}
	out := make([]deviceJSON, 0, len(devs))
	for _, d := range devs {
		out = append(out, toDeviceJSON(d))
	}
	return map[string]any{"devices": out}, nil
}

// getDevice serves GET /_matrix/client/v3/devices/{deviceId}.
func (a *API) getDevice(r *http.Request, s *accounts.Session) (any, error) {
	d, err := a.db.Device(r.Context(), s.UserID, pathVar(r, "deviceId"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Unknown device")
	}
	if err != nil {
		return nil, err
	}
	return toDeviceJSON(*d), nil
}

// updateDevice serves PUT /_matrix/client/v3/devices/{deviceId}.
func (a *API) updateDevice(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		DisplayName *string `json:"display_name"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	id := pathVar(r, "deviceId")
	err := a.db.Write(r.Context(), func(tx *storage.Tx) error {
		if req.DisplayName == nil {
			_, err := tx.Device(r.Context(), s.UserID, id)
			return err
		}
		if len(*req.DisplayName) > 100 {
			return httputil.InvalidParam("display_name is longer than 100 bytes")
		}
		return tx.SetDeviceDisplayName(r.Context(), s.UserID, id, *req.DisplayName)
	})
	if errors.Is(err, storage.ErrNotFound) {
		// MSC4190: an appservice creates its users' devices this way.
		if created, err := a.createAppServiceDevice(r, s, id, req.DisplayName); err != nil {
			return nil, err
		} else if created {
			return httputil.Response{Status: http.StatusCreated, Body: httputil.Empty}, nil
		}
		return nil, httputil.NotFound("Unknown device")
	}
	if err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// deleteDevice serves DELETE /_matrix/client/v3/devices/{deviceId}.
func (a *API) deleteDevice(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		Auth *uiaAuth `json:"auth"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := a.passwordUIA(r, s, req.Auth); err != nil {
		return nil, err
	}
	if _, err := a.accounts.DeleteDevices(r.Context(), s.UserID, []string{pathVar(r, "deviceId")}, ""); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// deleteDevices serves POST /_matrix/client/v3/delete_devices.
func (a *API) deleteDevices(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		Auth    *uiaAuth `json:"auth"`
		Devices []string `json:"devices"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Devices == nil {
		return nil, httputil.MissingParam("devices is required")
	}
	if err := a.passwordUIA(r, s, req.Auth); err != nil {
		return nil, err
	}
	if _, err := a.accounts.DeleteDevices(r.Context(), s.UserID, req.Devices, ""); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}
