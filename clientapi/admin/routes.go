package admin

import (
	"net/http"

	"matrixhs/storage"

	"matrixhs/internal/auth"
	"matrixhs/internal/httputil"
)

// Register adds the admin endpoints to the server's route table.
func (a *API) Register(rt *httputil.Router) {
	h := auth.Public
	get, post, put, del := http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete

	// Shared-secret registration (Synapse's admin API, used by scripts and test suites).
	rt.Exact(get, "/_synapse/admin/v1/register", h(a.adminRegisterNonce))
	rt.Exact(post, "/_synapse/admin/v1/register", h(a.adminRegister))
	// Synapse-compatible admin API (admin.go).
	rt.Exact(get, "/_synapse/admin/v1/server_version", a.authn.AdminJSON(a.adminServerVersion))
	rt.Exact(get, "/_synapse/admin/v2/users", a.authn.AdminJSON(a.adminListUsers))
	rt.Exact(get, "/_synapse/admin/v2/users/{userId}", a.authn.AdminJSON(a.adminGetUser))
	rt.Exact(put, "/_synapse/admin/v2/users/{userId}", a.authn.AdminJSON(a.adminPutUser))
	rt.Exact(get, "/_synapse/admin/v2/users/{userId}/devices", a.authn.AdminJSON(a.adminUserDevices))
	rt.Exact(del, "/_synapse/admin/v2/users/{userId}/devices/{deviceId}", a.authn.AdminJSON(a.adminDeleteDevices))
	rt.Exact(post, "/_synapse/admin/v2/users/{userId}/delete_devices", a.authn.AdminJSON(a.adminDeleteDevices))
	rt.Exact(get, "/_synapse/admin/v1/users/{userId}/joined_rooms", a.authn.AdminJSON(a.adminJoinedRooms))
	rt.Exact(post, "/_synapse/admin/v1/deactivate/{userId}", a.authn.AdminJSON(a.adminDeactivate))
	rt.Exact(post, "/_synapse/admin/v1/reset_password/{userId}", a.authn.AdminJSON(a.adminResetPassword))
	rt.Exact(get, "/_synapse/admin/v1/users/{userId}/admin", a.authn.AdminJSON(a.adminUserAdmin))
	rt.Exact(put, "/_synapse/admin/v1/users/{userId}/admin", a.authn.AdminJSON(a.adminUserAdmin))
	rt.Exact(get, "/_synapse/admin/v1/whois/{userId}", a.authn.AdminJSON(a.whois))
	rt.Client(get, "/admin/whois/{userId}", a.authn.JSON(a.whois))
	rt.Exact(get, "/_synapse/admin/v1/registration_tokens", a.authn.AdminJSON(a.adminListRegTokens))
	rt.Exact(post, "/_synapse/admin/v1/registration_tokens/new", a.authn.AdminJSON(a.adminNewRegToken))
	rt.Exact(get, "/_synapse/admin/v1/registration_tokens/{token}", a.authn.AdminJSON(a.adminGetRegToken))
	rt.Exact(put, "/_synapse/admin/v1/registration_tokens/{token}", a.authn.AdminJSON(a.adminUpdateRegToken))
	rt.Exact(del, "/_synapse/admin/v1/registration_tokens/{token}", a.authn.AdminJSON(a.adminDeleteRegToken))
	rt.Exact(get, "/_synapse/admin/v1/rooms", a.authn.AdminJSON(a.adminListRooms))
	rt.Exact(get, "/_synapse/admin/v1/rooms/{roomId}", a.authn.AdminJSON(a.adminGetRoom))
	rt.Exact(get, "/_synapse/admin/v1/rooms/{roomId}/members", a.authn.AdminJSON(a.adminRoomMembers))
	rt.Exact(del, "/_synapse/admin/v1/rooms/{roomId}", a.authn.AdminJSON(a.adminDeleteRoom))
	rt.Exact(post, "/_synapse/admin/v1/rooms/{roomId}/delete", a.authn.AdminJSON(a.adminDeleteRoom))
	rt.Exact(del, "/_synapse/admin/v2/rooms/{roomId}", a.authn.AdminJSON(a.adminDeleteRoomV2))
	rt.Exact(get, "/_synapse/admin/v2/rooms/{roomId}/delete_status", a.authn.AdminJSON(a.adminDeleteStatusByRoom))
	rt.Exact(get, "/_synapse/admin/v2/rooms/delete_status/{deleteId}", a.authn.AdminJSON(a.adminDeleteStatusByID))
	rt.Exact(post, "/_synapse/admin/v1/purge_history/{roomId}", a.authn.AdminJSON(a.adminPurgeHistory))
	rt.Exact(post, "/_synapse/admin/v1/purge_history/{roomId}/{eventId}", a.authn.AdminJSON(a.adminPurgeHistory))
	rt.Exact(get, "/_synapse/admin/v1/purge_history_status/{purgeId}", a.authn.AdminJSON(a.adminPurgeHistoryStatus))
	rt.Exact(get, "/_synapse/admin/v1/rooms/{roomId}/block", a.authn.AdminJSON(a.adminRoomBlock))
	rt.Exact(put, "/_synapse/admin/v1/rooms/{roomId}/block", a.authn.AdminJSON(a.adminRoomBlock))
	rt.Exact(get, "/_synapse/admin/v1/federation/destinations", a.authn.AdminJSON(a.adminDestinations))
	rt.Exact(get, "/_synapse/admin/v1/federation/destinations/{destination}", a.authn.AdminJSON(a.adminDestination))
	rt.Exact(get, "/_synapse/admin/v1/federation/destinations/{destination}/rooms", a.authn.AdminJSON(a.adminDestinationRooms))
	rt.Exact(post, "/_synapse/admin/v1/federation/destinations/{destination}/reset_connection",
		a.authn.AdminJSON(a.adminResetDestination))
	rt.Exact(get, "/_synapse/admin/v1/rooms/{roomId}/state", a.authn.AdminJSON(a.adminRoomState))
	rt.Exact(get, "/_synapse/admin/v1/rooms/{roomId}/messages", a.authn.AdminJSON(a.adminRoomMessages))
	rt.Exact(post, "/_synapse/admin/v1/join/{roomIdOrAlias}", a.authn.AdminJSON(a.adminJoin))
	rt.Exact(post, "/_synapse/admin/v1/rooms/{roomIdOrAlias}/make_room_admin", a.authn.AdminJSON(a.adminMakeRoomAdmin))
	rt.Exact(get, "/_synapse/admin/v1/rooms/{roomIdOrAlias}/forward_extremities", a.authn.AdminJSON(a.adminForwardExtremities))
	rt.Exact(del, "/_synapse/admin/v1/rooms/{roomIdOrAlias}/forward_extremities", a.authn.AdminJSON(a.adminForwardExtremities))
	rt.Exact(post, "/_synapse/admin/v1/users/{userId}/login", a.authn.AdminJSON(a.adminLoginAs))
	rt.Exact(post, "/_synapse/admin/v1/users/{userId}/shadow_ban", a.authn.AdminJSON(a.adminShadowBan))
	rt.Exact(del, "/_synapse/admin/v1/users/{userId}/shadow_ban", a.authn.AdminJSON(a.adminShadowBan))
	rt.Exact(put, "/_synapse/admin/v1/suspend/{userId}", a.authn.AdminJSON(a.adminSuspendSynapse))
	rt.V1(get, "/admin/lock/{userId}", a.authn.AdminJSON(a.adminAccountFlag(storage.FlagLocked, "locked")))
	rt.V1(put, "/admin/lock/{userId}", a.authn.AdminJSON(a.adminAccountFlag(storage.FlagLocked, "locked")))
	rt.V1(get, "/admin/suspend/{userId}", a.authn.AdminJSON(a.adminAccountFlag(storage.FlagSuspended, "suspended")))
	rt.V1(put, "/admin/suspend/{userId}", a.authn.AdminJSON(a.adminAccountFlag(storage.FlagSuspended, "suspended")))
	for _, m := range []string{get, post, del} {
		rt.Exact(m, "/_synapse/admin/v1/users/{userId}/override_ratelimit", a.authn.AdminJSON(a.adminRatelimit))
	}
	rt.Exact(get, "/_synapse/admin/v1/users/{userId}/accountdata", a.authn.AdminJSON(a.adminAccountData))
	rt.Exact(get, "/_synapse/admin/v1/users/{userId}/pushers", a.authn.AdminJSON(a.adminPushers))
	rt.Exact(get, "/_synapse/admin/v2/users/{userId}/devices/{deviceId}", a.authn.AdminJSON(a.adminDevice))
	rt.Exact(put, "/_synapse/admin/v2/users/{userId}/devices/{deviceId}", a.authn.AdminJSON(a.adminDevice))
	rt.Exact(get, "/_synapse/admin/v1/threepid/{medium}/users/{address}", a.authn.AdminJSON(a.adminNoSuchLookup))
	rt.Exact(get, "/_synapse/admin/v1/auth_providers/{provider}/users/{externalId}", a.authn.AdminJSON(a.adminNoSuchLookup))
	rt.Exact(get, "/_synapse/admin/v1/username_available", a.authn.AdminJSON(a.adminUsernameAvailable))
	rt.Exact(post, "/_synapse/admin/v1/user/{userId}/redact", a.authn.AdminJSON(a.adminRedactUser))
	rt.Exact(get, "/_synapse/admin/v1/user/redact_status/{redactId}", a.authn.AdminJSON(a.adminRedactStatus))
	rt.Exact(get, "/_synapse/admin/v1/event_reports", a.authn.AdminJSON(a.adminEventReports))
	rt.Exact(get, "/_synapse/admin/v1/event_reports/{reportId}", a.authn.AdminJSON(a.adminEventReport))
	rt.Exact(del, "/_synapse/admin/v1/event_reports/{reportId}", a.authn.AdminJSON(a.adminEventReport))
	rt.Exact(get, "/_synapse/admin/v1/background_updates/status", a.authn.AdminJSON(a.adminBackgroundStatus))
	rt.Exact(get, "/_synapse/admin/v1/background_updates/enabled", a.authn.AdminJSON(a.adminBackgroundEnabled))
	rt.Exact(post, "/_synapse/admin/v1/background_updates/enabled", a.authn.AdminJSON(a.adminBackgroundEnabled))
	rt.Exact(post, "/_synapse/admin/v1/background_updates/start_job", a.authn.AdminJSON(a.adminBackgroundStartJob))
	rt.Exact(post, "/_synapse/admin/v1/send_server_notice", a.authn.AdminJSON(a.adminSendServerNotice))
	rt.Exact(put, "/_synapse/admin/v1/send_server_notice/{txnId}", a.authn.AdminJSON(a.adminSendServerNotice))
}
