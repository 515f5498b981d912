package clientapi

import (
	"errors"
	"net/http"

	"matrixhs/internal/httputil"
	"matrixhs/roomserver"
)

// roomErr maps roomserver errors to Matrix errors.
func roomErr(err error) error {
	var fe *roomserver.ForbiddenError
	var be *roomserver.BadRequestError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		if fe.Code != "" {
			return &httputil.Error{Status: http.StatusForbidden, Code: fe.Code, Msg: fe.Reason}
		}
		return httputil.Forbidden("%s", fe.Reason)
	case errors.As(err, &be):
		if be.Code != "" {
			return &httputil.Error{Status: http.StatusBadRequest, Code: be.Code, Msg: be.Reason}
		}
		return httputil.BadJSON("%s", be.Reason)
	case errors.Is(err, roomserver.ErrRoomNotFound):
		return httputil.NotFound("Unknown room")
	case errors.Is(err, roomserver.ErrEventTooLarge):
		return httputil.TooLarge("event is larger than 65536 bytes")
	case errors.Is(err, roomserver.ErrUnsupportedVersion):
		return &httputil.Error{Status: http.StatusBadRequest, Code: "M_UNSUPPORTED_ROOM_VERSION", Msg: "unsupported room version"}
	case errors.Is(err, roomserver.ErrAliasInUse):
		return &httputil.Error{Status: http.StatusBadRequest, Code: "M_ROOM_IN_USE", Msg: "room alias already taken"}
	}
	return err
}
