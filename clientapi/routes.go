package clientapi

import (
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/httputil"
)

// register is the route table: every endpoint the client API serves.
func (a *API) register(rt *router) {
	h := func(f func(*http.Request) (any, error)) http.Handler { return httputil.Handler(f) }
	get, post, put, del := http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete

	// Discovery.
	rt.exact(get, "/_matrix/client/versions", h(a.versions))
	rt.exact(get, "/.well-known/matrix/client", h(a.wellKnownClient))
	rt.exact(get, "/.well-known/matrix/server", h(a.wellKnownServer))
	rt.exact(get, "/.well-known/matrix/support", h(a.wellKnownSupport))
	rt.client(get, "/capabilities", a.auth(a.capabilities))

	// Registration and login.
	rt.client(post, "/register", h(a.registerAccount))
	rt.client(get, "/register/available", h(a.registerAvailable))
	rt.v1(get, "/register/m.login.registration_token/validity", h(a.registrationTokenValidity))
	rt.client(get, "/login", h(a.loginFlows))
	rt.client(post, "/login", h(a.login))
	rt.client(post, "/refresh", h(a.refresh))
	rt.v1(post, "/refresh", h(a.refresh))
	rt.client(post, "/logout", a.auth(a.logout))
	rt.client(post, "/logout/all", a.auth(a.logoutAll))

	// Account.
	rt.client(get, "/account/whoami", a.auth(a.whoami))
	rt.client(post, "/account/password", a.auth(a.changePassword))
	rt.client(post, "/account/deactivate", a.auth(a.deactivate))
	rt.client(get, "/account/3pid", a.auth(a.threePIDs))

	// Devices.
	rt.client(get, "/devices", a.auth(a.listDevices))
	rt.client(get, "/devices/{deviceId}", a.auth(a.getDevice))
	rt.client(put, "/devices/{deviceId}", a.auth(a.updateDevice))
	rt.client(del, "/devices/{deviceId}", a.auth(a.deleteDevice))
	rt.client(post, "/delete_devices", a.auth(a.deleteDevices))

	// Profile.
	rt.client(get, "/profile/{userId}", h(a.getProfile))
	rt.client(get, "/profile/{userId}/{field:displayname|avatar_url}", h(a.getProfileField))
	rt.client(put, "/profile/{userId}/{field:displayname|avatar_url}", a.auth(a.setProfileField))

	// Account data.
	rt.client(get, "/user/{userId}/account_data/{type}", a.auth(a.getAccountData))
	rt.client(put, "/user/{userId}/account_data/{type}", a.auth(a.putAccountData))
	rt.client(get, "/user/{userId}/rooms/{roomId}/account_data/{type}", a.auth(a.getAccountData))
	rt.client(put, "/user/{userId}/rooms/{roomId}/account_data/{type}", a.auth(a.putAccountData))

	// Filters.
	rt.client(post, "/user/{userId}/openid/request_token", a.auth(a.requestOpenIDToken))
	rt.client(post, "/user/{userId}/filter", a.auth(a.createFilter))
	rt.client(get, "/user/{userId}/filter/{filterId}", a.auth(a.getFilter))

	// Push rules.
	rt.client(get, "/pushrules/", a.auth(a.getPushRules))
	rt.client(get, "/pushrules", a.auth(a.getPushRules))
	rt.client(get, "/pushrules/{scope}/", a.auth(a.getPushRulesScope))
	rt.client(get, "/pushrules/{scope}", a.auth(a.getPushRulesScope))
	rt.client(get, "/pushrules/{scope}/{kind}/{ruleId}", a.auth(a.getPushRule))
	rt.client(put, "/pushrules/{scope}/{kind}/{ruleId}", a.auth(a.putPushRule))
	rt.client(del, "/pushrules/{scope}/{kind}/{ruleId}", a.auth(a.deletePushRule))
	rt.client(get, "/pushrules/{scope}/{kind}/{ruleId}/{attr:enabled|actions}", a.auth(a.getPushRuleAttr))
	rt.client(put, "/pushrules/{scope}/{kind}/{ruleId}/{attr:enabled|actions}", a.auth(a.putPushRuleAttr))

	// Pushers (delivery: internal/pushgateway).
	rt.client(get, "/pushers", a.auth(a.getPushers))
	rt.client(post, "/pushers/set", a.auth(a.setPusher))

	// Sync and ephemeral data.
	rt.client(get, "/sync", a.auth(a.sync))
	rt.exact(post, "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", a.auth(a.slidingSync))
	const threadSub = "/_matrix/client/unstable/io.element.msc4306/rooms/{roomId}/thread/{threadRootId}/subscription"
	rt.exact(put, threadSub, a.auth(a.putThreadSubscription))
	rt.exact(get, threadSub, a.auth(a.getThreadSubscription))
	rt.exact(del, threadSub, a.auth(a.deleteThreadSubscription))
	rt.exact(get, "/_matrix/client/unstable/org.matrix.msc4140/delayed_events", a.auth(a.listDelayed))
	rt.exact(post, "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delayId}", a.auth(a.updateDelayed))
	rt.client(put, "/rooms/{roomId}/typing/{userId}", a.auth(a.putTyping))
	rt.client(post, "/rooms/{roomId}/receipt/{receiptType}/{eventId}", a.auth(a.postReceipt))
	rt.client(post, "/rooms/{roomId}/read_markers", a.auth(a.postReadMarkers))
	rt.client(get, "/presence/{userId}/status", a.auth(a.getPresence))
	rt.client(put, "/presence/{userId}/status", a.auth(a.putPresence))
	rt.client(get, "/notifications", a.auth(a.getNotifications))

	// Rooms: creation and membership.
	rt.client(post, "/createRoom", a.auth(a.createRoom))
	rt.client(post, "/join/{roomIdOrAlias}", a.auth(a.joinRoomByIDOrAlias))
	rt.client(post, "/knock/{roomIdOrAlias}", a.auth(a.knockRoom))
	rt.client(post, "/rooms/{roomId}/join", a.auth(a.joinRoom))
	rt.client(post, "/rooms/{roomId}/leave", a.auth(a.leaveRoom))
	rt.client(post, "/rooms/{roomId}/forget", a.auth(a.forgetRoom))
	rt.client(post, "/rooms/{roomId}/{action:invite}", a.auth(a.targetMembership(spec.Invite)))
	rt.client(post, "/rooms/{roomId}/{action:kick}", a.auth(a.targetMembership(spec.Leave)))
	rt.client(post, "/rooms/{roomId}/{action:ban}", a.auth(a.targetMembership(spec.Ban)))
	rt.client(post, "/rooms/{roomId}/{action:unban}", a.auth(a.targetMembership(spec.Leave)))
	rt.client(get, "/joined_rooms", a.auth(a.joinedRooms))
	rt.client(post, "/rooms/{roomId}/upgrade", a.auth(a.upgradeRoom))

	// Rooms: sending.
	rt.client(put, "/rooms/{roomId}/send/{eventType}/{txnId}", a.auth(a.sendMessage))
	rt.client(put, "/rooms/{roomId}/state/{eventType}", a.auth(a.putState))
	rt.client(put, "/rooms/{roomId}/state/{eventType}/", a.auth(a.putState))
	rt.client(put, "/rooms/{roomId}/state/{eventType}/{stateKey}", a.auth(a.putState))
	rt.client(put, "/rooms/{roomId}/redact/{eventId}/{txnId}", a.auth(a.redactEvent))

	// Rooms: reading.
	rt.client(get, "/rooms/{roomId}/state", a.auth(a.getRoomState))
	rt.client(get, "/rooms/{roomId}/state/{eventType}", a.auth(a.getStateEvent))
	rt.client(get, "/rooms/{roomId}/state/{eventType}/", a.auth(a.getStateEvent))
	rt.client(get, "/rooms/{roomId}/state/{eventType}/{stateKey}", a.auth(a.getStateEvent))
	rt.client(get, "/rooms/{roomId}/members", a.auth(a.getMembers))
	rt.client(get, "/rooms/{roomId}/joined_members", a.auth(a.getJoinedMembers))
	rt.client(get, "/rooms/{roomId}/messages", a.auth(a.getMessages))
	rt.client(get, "/rooms/{roomId}/event/{eventId}", a.auth(a.getEvent))
	rt.client(get, "/rooms/{roomId}/context/{eventId}", a.auth(a.getContext))
	rt.v1(get, "/rooms/{roomId}/timestamp_to_event", a.auth(a.timestampToEvent))

	// Relations and threads.
	rt.v1(get, "/rooms/{roomId}/relations/{eventId}", a.auth(a.getRelations))
	rt.v1(get, "/rooms/{roomId}/relations/{eventId}/{relType}", a.auth(a.getRelations))
	rt.v1(get, "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", a.auth(a.getRelations))
	rt.v1(get, "/rooms/{roomId}/threads", a.auth(a.getThreads))

	// Room aliases and the room directory.
	rt.client(get, "/directory/room/{roomAlias}", h(a.getRoomAlias))
	rt.client(put, "/directory/room/{roomAlias}", a.auth(a.putRoomAlias))
	rt.client(del, "/directory/room/{roomAlias}", a.auth(a.deleteRoomAlias))
	rt.client(get, "/rooms/{roomId}/aliases", a.auth(a.getLocalAliases))
	rt.client(get, "/directory/list/room/{roomId}", h(a.getRoomVisibility))
	rt.client(put, "/directory/list/room/{roomId}", a.auth(a.putRoomVisibility))
	rt.client(get, "/publicRooms", a.optionalAuth(a.getPublicRooms))
	rt.client(post, "/publicRooms", a.auth(a.postPublicRooms))

	// Search: room events (full text) and the user directory.
	rt.client(post, "/search", a.auth(a.search))
	rt.client(post, "/user_directory/search", a.auth(a.searchUserDirectory))

	// End-to-end encryption: device and one-time keys, cross-signing,
	// to-device messages and server-side key backup.
	rt.client(post, "/keys/upload", a.auth(a.uploadKeys))
	rt.client(post, "/keys/query", a.auth(a.queryKeys))
	rt.client(post, "/keys/claim", a.auth(a.claimKeys))
	rt.client(get, "/keys/changes", a.auth(a.keyChanges))
	rt.client(post, "/keys/device_signing/upload", a.auth(a.uploadCrossSigningKeys))
	rt.client(post, "/keys/signatures/upload", a.auth(a.uploadSignatures))
	// matrix-js-sdk still sends these to the unstable prefix (uploadDeviceSigningKeys).
	rt.exact(post, "/_matrix/client/unstable/keys/device_signing/upload", a.auth(a.uploadCrossSigningKeys))
	rt.exact(post, "/_matrix/client/unstable/keys/signatures/upload", a.auth(a.uploadSignatures))
	rt.client(put, "/sendToDevice/{eventType}/{txnId}", a.auth(a.sendToDevice))
	rt.client(post, "/room_keys/version", a.auth(a.createBackupVersion))
	rt.client(get, "/room_keys/version", a.auth(a.getBackupVersion))
	rt.client(get, "/room_keys/version/{version}", a.auth(a.getBackupVersion))
	rt.client(put, "/room_keys/version/{version}", a.auth(a.putBackupVersion))
	rt.client(del, "/room_keys/version/{version}", a.auth(a.deleteBackupVersion))
	for _, p := range []string{"/room_keys/keys", "/room_keys/keys/{roomId}", "/room_keys/keys/{roomId}/{sessionId}"} {
		rt.client(get, p, a.auth(a.getBackupKeys))
		rt.client(put, p, a.auth(a.putBackupKeys))
		rt.client(del, p, a.auth(a.deleteBackupKeys))
	}

	// Spaces, room previews, room tags, reporting, third-party identifiers
	// (refused) and VoIP (spaces.go, tags.go, reports.go, thirdparty.go).
	rt.v1(get, "/rooms/{roomId}/hierarchy", a.auth(a.getHierarchy))
	rt.v1(get, "/room_summary/{roomIdOrAlias}", a.optionalAuth(a.getRoomSummary))
	rt.exact(get, "/_matrix/client/unstable/im.nheko.summary/summary/{roomIdOrAlias}", a.optionalAuth(a.getRoomSummary))
	rt.exact(get, "/_matrix/client/unstable/im.nheko.summary/rooms/{roomIdOrAlias}/summary", a.optionalAuth(a.getRoomSummary))
	rt.client(get, "/user/{userId}/rooms/{roomId}/tags", a.auth(a.getTags))
	rt.client(put, "/user/{userId}/rooms/{roomId}/tags/{tag}", a.auth(a.putTag))
	rt.client(del, "/user/{userId}/rooms/{roomId}/tags/{tag}", a.auth(a.deleteTag))
	rt.client(post, "/rooms/{roomId}/report/{eventId}", a.auth(a.reportEvent))
	rt.client(post, "/rooms/{roomId}/report", a.auth(a.reportRoom))
	rt.client(post, "/users/{userId}/report", a.auth(a.reportUser))
	rt.client(post, "/account/3pid", a.auth(a.addThreePID))
	rt.client(post, "/account/3pid/add", a.auth(a.addThreePID))
	rt.client(post, "/account/3pid/bind", a.auth(a.bindThreePID))
	rt.client(post, "/account/3pid/delete", a.auth(a.removeThreePID))
	rt.client(post, "/account/3pid/unbind", a.auth(a.removeThreePID))
	for _, p := range []string{"/account/3pid", "/register", "/account/password"} {
		rt.client(post, p+"/{medium:email|msisdn}/requestToken", h(a.requestThreePIDToken))
	}
	rt.client(get, "/voip/turnServer", a.auth(a.turnServer))

	// Third-party networks (none are bridged).
	rt.client(get, "/thirdparty/protocols", a.auth(a.thirdPartyProtocols))
	rt.client(get, "/thirdparty/protocol/{protocol}", a.auth(a.thirdPartyProtocol))
	rt.client(get, "/thirdparty/location/{protocol}", a.auth(a.thirdPartyLookup))
	rt.client(get, "/thirdparty/user/{protocol}", a.auth(a.thirdPartyLookup))
	rt.client(get, "/thirdparty/location", a.auth(a.thirdPartyLookup))
	rt.client(get, "/thirdparty/user", a.auth(a.thirdPartyLookup))

	// Shared-secret registration (Synapse's admin API, used by scripts and test suites).
	rt.exact(get, "/_synapse/admin/v1/register", h(a.adminRegisterNonce))
	rt.exact(post, "/_synapse/admin/v1/register", h(a.adminRegister))
	// Synapse-compatible admin API (admin.go).
	rt.exact(get, "/_synapse/admin/v1/server_version", a.adminOnly(a.adminServerVersion))
	rt.exact(get, "/_synapse/admin/v2/users", a.adminOnly(a.adminListUsers))
	rt.exact(get, "/_synapse/admin/v2/users/{userId}", a.adminOnly(a.adminGetUser))
	rt.exact(put, "/_synapse/admin/v2/users/{userId}", a.adminOnly(a.adminPutUser))
	rt.exact(get, "/_synapse/admin/v2/users/{userId}/devices", a.adminOnly(a.adminUserDevices))
	rt.exact(del, "/_synapse/admin/v2/users/{userId}/devices/{deviceId}", a.adminOnly(a.adminDeleteDevices))
	rt.exact(post, "/_synapse/admin/v2/users/{userId}/delete_devices", a.adminOnly(a.adminDeleteDevices))
	rt.exact(get, "/_synapse/admin/v1/users/{userId}/joined_rooms", a.adminOnly(a.adminJoinedRooms))
	rt.exact(post, "/_synapse/admin/v1/deactivate/{userId}", a.adminOnly(a.adminDeactivate))
	rt.exact(post, "/_synapse/admin/v1/reset_password/{userId}", a.adminOnly(a.adminResetPassword))
	rt.exact(get, "/_synapse/admin/v1/users/{userId}/admin", a.adminOnly(a.adminUserAdmin))
	rt.exact(put, "/_synapse/admin/v1/users/{userId}/admin", a.adminOnly(a.adminUserAdmin))
	rt.exact(get, "/_synapse/admin/v1/whois/{userId}", a.adminOnly(a.whois))
	rt.client(get, "/admin/whois/{userId}", a.auth(a.whois))
	rt.exact(get, "/_synapse/admin/v1/registration_tokens", a.adminOnly(a.adminListRegTokens))
	rt.exact(post, "/_synapse/admin/v1/registration_tokens/new", a.adminOnly(a.adminNewRegToken))
	rt.exact(get, "/_synapse/admin/v1/registration_tokens/{token}", a.adminOnly(a.adminGetRegToken))
	rt.exact(put, "/_synapse/admin/v1/registration_tokens/{token}", a.adminOnly(a.adminUpdateRegToken))
	rt.exact(del, "/_synapse/admin/v1/registration_tokens/{token}", a.adminOnly(a.adminDeleteRegToken))
	rt.exact(get, "/_synapse/admin/v1/rooms", a.adminOnly(a.adminListRooms))
	rt.exact(get, "/_synapse/admin/v1/rooms/{roomId}", a.adminOnly(a.adminGetRoom))
	rt.exact(get, "/_synapse/admin/v1/rooms/{roomId}/members", a.adminOnly(a.adminRoomMembers))
	rt.exact(del, "/_synapse/admin/v1/rooms/{roomId}", a.adminOnly(a.adminShutdownRoom))
	rt.exact(get, "/_synapse/admin/v1/rooms/{roomId}/block", a.adminOnly(a.adminRoomBlock))
	rt.exact(put, "/_synapse/admin/v1/rooms/{roomId}/block", a.adminOnly(a.adminRoomBlock))
	rt.exact(post, "/_synapse/admin/v1/send_server_notice", a.adminOnly(a.adminSendServerNotice))
	rt.exact(put, "/_synapse/admin/v1/send_server_notice/{txnId}", a.adminOnly(a.adminSendServerNotice))
}
