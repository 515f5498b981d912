package clientapi

import (
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/auth"
	"matrixhs/internal/httputil"
)

// register is the route table: every endpoint the client API serves.
func (a *API) register(rt *httputil.Router) {
	h := auth.Public
	get, post, put, del := http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete

	// Discovery.
	rt.Exact(get, "/_matrix/client/versions", h(a.versions))
	rt.Exact(get, "/.well-known/matrix/client", h(a.wellKnownClient))
	rt.Exact(get, "/.well-known/matrix/server", h(a.wellKnownServer))
	rt.Exact(get, "/.well-known/matrix/support", h(a.wellKnownSupport))
	rt.Client(get, "/capabilities", a.auth(a.capabilities))

	// Registration and login.
	rt.Client(post, "/register", h(a.registerAccount))
	rt.Client(get, "/register/available", h(a.registerAvailable))
	rt.V1(get, "/register/m.login.registration_token/validity", h(a.registrationTokenValidity))
	rt.Client(get, "/login", h(a.loginFlows))
	rt.Client(post, "/login", h(a.login))
	rt.Client(post, "/refresh", h(a.refresh))
	rt.V1(post, "/refresh", h(a.refresh))
	rt.Client(post, "/logout", a.auth(a.logout))
	rt.Client(post, "/logout/all", a.auth(a.logoutAll))

	// Account.
	rt.Client(get, "/account/whoami", a.auth(a.whoami))
	rt.Client(post, "/account/password", a.auth(a.changePassword))
	rt.Client(post, "/account/deactivate", a.auth(a.deactivate))
	rt.Client(get, "/account/3pid", a.auth(a.threePIDs))

	// Devices.
	rt.Client(get, "/devices", a.auth(a.listDevices))
	rt.Client(get, "/devices/{deviceId}", a.auth(a.getDevice))
	rt.Client(put, "/devices/{deviceId}", a.auth(a.updateDevice))
	rt.Client(del, "/devices/{deviceId}", a.auth(a.deleteDevice))
	rt.Client(post, "/delete_devices", a.auth(a.deleteDevices))

	// Profile.
	rt.Client(get, "/profile/{userId}", h(a.getProfile))
	rt.Client(get, "/profile/{userId}/{field:displayname|avatar_url}", h(a.getProfileField))
	rt.Client(put, "/profile/{userId}/{field:displayname|avatar_url}", a.auth(notSuspended(a.setProfileField)))

	// Account data.
	rt.Client(get, "/user/{userId}/account_data/{type}", a.auth(a.getAccountData))
	rt.Client(put, "/user/{userId}/account_data/{type}", a.auth(a.putAccountData))
	rt.Client(get, "/user/{userId}/rooms/{roomId}/account_data/{type}", a.auth(a.getAccountData))
	rt.Client(put, "/user/{userId}/rooms/{roomId}/account_data/{type}", a.auth(a.putAccountData))

	// Filters.
	rt.Client(post, "/user/{userId}/openid/request_token", a.auth(a.requestOpenIDToken))
	rt.Client(post, "/user/{userId}/filter", a.auth(a.createFilter))
	rt.Client(get, "/user/{userId}/filter/{filterId}", a.auth(a.getFilter))

	// Push rules.
	rt.Client(get, "/pushrules/", a.auth(a.getPushRules))
	rt.Client(get, "/pushrules", a.auth(a.getPushRules))
	rt.Client(get, "/pushrules/{scope}/", a.auth(a.getPushRulesScope))
	rt.Client(get, "/pushrules/{scope}", a.auth(a.getPushRulesScope))
	rt.Client(get, "/pushrules/{scope}/{kind}/{ruleId}", a.auth(a.getPushRule))
	rt.Client(put, "/pushrules/{scope}/{kind}/{ruleId}", a.auth(a.putPushRule))
	rt.Client(del, "/pushrules/{scope}/{kind}/{ruleId}", a.auth(a.deletePushRule))
	rt.Client(get, "/pushrules/{scope}/{kind}/{ruleId}/{attr:enabled|actions}", a.auth(a.getPushRuleAttr))
	rt.Client(put, "/pushrules/{scope}/{kind}/{ruleId}/{attr:enabled|actions}", a.auth(a.putPushRuleAttr))

	// Pushers (delivery: internal/pushgateway).
	rt.Client(get, "/pushers", a.auth(a.getPushers))
	rt.Client(post, "/pushers/set", a.auth(a.setPusher))

	// Sync and ephemeral data.
	a.sync.Register(rt) // /sync and sliding sync (clientapi/syncapi)
	const threadSub = "/_matrix/client/unstable/io.element.msc4306/rooms/{roomId}/thread/{threadRootId}/subscription"
	rt.Exact(put, threadSub, a.auth(a.putThreadSubscription))
	rt.Exact(get, threadSub, a.auth(a.getThreadSubscription))
	rt.Exact(del, threadSub, a.auth(a.deleteThreadSubscription))
	rt.Exact(get, "/_matrix/client/unstable/org.matrix.msc4140/delayed_events", a.auth(a.listDelayed))
	rt.Exact(post, "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delayId}", a.auth(a.updateDelayed))
	rt.Client(put, "/rooms/{roomId}/typing/{userId}", a.auth(a.putTyping))
	rt.Client(post, "/rooms/{roomId}/receipt/{receiptType}/{eventId}", a.auth(a.postReceipt))
	rt.Client(post, "/rooms/{roomId}/read_markers", a.auth(a.postReadMarkers))
	rt.Client(get, "/presence/{userId}/status", a.auth(a.getPresence))
	rt.Client(put, "/presence/{userId}/status", a.auth(a.putPresence))
	rt.Client(get, "/notifications", a.auth(a.getNotifications))

	// Rooms: creation and membership.
	rt.Client(post, "/createRoom", a.auth(notSuspended(a.createRoom)))
	rt.Client(post, "/join/{roomIdOrAlias}", a.auth(notSuspended(a.joinRoomByIDOrAlias)))
	rt.Client(post, "/knock/{roomIdOrAlias}", a.auth(notSuspended(a.knockRoom)))
	rt.Client(post, "/rooms/{roomId}/join", a.auth(notSuspended(a.joinRoom)))
	rt.Client(post, "/rooms/{roomId}/leave", a.auth(a.leaveRoom))
	rt.Client(post, "/rooms/{roomId}/forget", a.auth(a.forgetRoom))
	rt.Client(post, "/rooms/{roomId}/{action:invite}", a.auth(shadowInvite(a.targetMembership(spec.Invite))))
	rt.Client(post, "/rooms/{roomId}/{action:kick}", a.auth(a.targetMembership(spec.Leave)))
	rt.Client(post, "/rooms/{roomId}/{action:ban}", a.auth(a.targetMembership(spec.Ban)))
	rt.Client(post, "/rooms/{roomId}/{action:unban}", a.auth(a.targetMembership(spec.Leave)))
	rt.Client(get, "/joined_rooms", a.auth(a.joinedRooms))
	rt.Client(post, "/rooms/{roomId}/upgrade", a.auth(a.upgradeRoom))

	// Rooms: sending.
	rt.Client(put, "/rooms/{roomId}/send/{eventType}/{txnId}", a.auth(shadowSend(a.sendMessage)))
	rt.Client(put, "/rooms/{roomId}/state/{eventType}", a.auth(shadowSend(a.putState)))
	rt.Client(put, "/rooms/{roomId}/state/{eventType}/", a.auth(shadowSend(a.putState)))
	rt.Client(put, "/rooms/{roomId}/state/{eventType}/{stateKey}", a.auth(shadowSend(a.putState)))
	rt.Client(put, "/rooms/{roomId}/redact/{eventId}/{txnId}", a.auth(a.shadowRedact(a.redactEvent)))

	// Rooms: reading.
	rt.Client(get, "/rooms/{roomId}/state", a.auth(a.getRoomState))
	rt.Client(get, "/rooms/{roomId}/state/{eventType}", a.auth(a.getStateEvent))
	rt.Client(get, "/rooms/{roomId}/state/{eventType}/", a.auth(a.getStateEvent))
	rt.Client(get, "/rooms/{roomId}/state/{eventType}/{stateKey}", a.auth(a.getStateEvent))
	rt.Client(get, "/rooms/{roomId}/members", a.auth(a.getMembers))
	rt.Client(get, "/rooms/{roomId}/joined_members", a.auth(a.getJoinedMembers))
	rt.Client(get, "/rooms/{roomId}/messages", a.auth(a.getMessages))
	rt.Client(get, "/rooms/{roomId}/event/{eventId}", a.auth(a.getEvent))
	rt.Client(get, "/rooms/{roomId}/context/{eventId}", a.auth(a.getContext))
	rt.V1(get, "/rooms/{roomId}/timestamp_to_event", a.auth(a.timestampToEvent))

	// Relations and threads.
	rt.V1(get, "/rooms/{roomId}/relations/{eventId}", a.auth(a.getRelations))
	rt.V1(get, "/rooms/{roomId}/relations/{eventId}/{relType}", a.auth(a.getRelations))
	rt.V1(get, "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", a.auth(a.getRelations))
	rt.V1(get, "/rooms/{roomId}/threads", a.auth(a.getThreads))

	// Room aliases and the room directory.
	rt.Client(get, "/directory/room/{roomAlias}", h(a.getRoomAlias))
	rt.Client(put, "/directory/room/{roomAlias}", a.auth(a.putRoomAlias))
	rt.Client(del, "/directory/room/{roomAlias}", a.auth(a.deleteRoomAlias))
	rt.Client(get, "/rooms/{roomId}/aliases", a.auth(a.getLocalAliases))
	rt.Client(get, "/directory/list/room/{roomId}", h(a.getRoomVisibility))
	rt.Client(put, "/directory/list/room/{roomId}", a.auth(a.putRoomVisibility))
	rt.Client(get, "/publicRooms", a.optionalAuth(a.getPublicRooms))
	rt.Client(post, "/publicRooms", a.auth(a.postPublicRooms))

	// Search: room events (full text) and the user directory.
	rt.Client(post, "/search", a.auth(a.search))
	rt.Client(post, "/user_directory/search", a.auth(a.searchUserDirectory))

	// End-to-end encryption: device and one-time keys, cross-signing,
	// to-device messages and server-side key backup.
	rt.Client(post, "/keys/upload", a.auth(a.uploadKeys))
	rt.Client(post, "/keys/query", a.auth(a.queryKeys))
	rt.Client(post, "/keys/claim", a.auth(a.claimKeys))
	rt.Client(get, "/keys/changes", a.auth(a.keyChanges))
	rt.Client(post, "/keys/device_signing/upload", a.auth(a.uploadCrossSigningKeys))
	rt.Client(post, "/keys/signatures/upload", a.auth(a.uploadSignatures))
	// matrix-js-sdk still sends these to the unstable prefix (uploadDeviceSigningKeys).
	rt.Exact(post, "/_matrix/client/unstable/keys/device_signing/upload", a.auth(a.uploadCrossSigningKeys))
	rt.Exact(post, "/_matrix/client/unstable/keys/signatures/upload", a.auth(a.uploadSignatures))
	rt.Client(put, "/sendToDevice/{eventType}/{txnId}", a.auth(a.sendToDevice))
	rt.Client(post, "/room_keys/version", a.auth(a.createBackupVersion))
	rt.Client(get, "/room_keys/version", a.auth(a.getBackupVersion))
	rt.Client(get, "/room_keys/version/{version}", a.auth(a.getBackupVersion))
	rt.Client(put, "/room_keys/version/{version}", a.auth(a.putBackupVersion))
	rt.Client(del, "/room_keys/version/{version}", a.auth(a.deleteBackupVersion))
	for _, p := range []string{"/room_keys/keys", "/room_keys/keys/{roomId}", "/room_keys/keys/{roomId}/{sessionId}"} {
		rt.Client(get, p, a.auth(a.getBackupKeys))
		rt.Client(put, p, a.auth(a.putBackupKeys))
		rt.Client(del, p, a.auth(a.deleteBackupKeys))
	}

	// Spaces, room previews, room tags, reporting, third-party identifiers
	// (refused) and VoIP (spaces.go, tags.go, reports.go, thirdparty.go).
	rt.V1(get, "/rooms/{roomId}/hierarchy", a.auth(a.getHierarchy))
	rt.V1(get, "/room_summary/{roomIdOrAlias}", a.optionalAuth(a.getRoomSummary))
	rt.Exact(get, "/_matrix/client/unstable/im.nheko.summary/summary/{roomIdOrAlias}", a.optionalAuth(a.getRoomSummary))
	rt.Exact(get, "/_matrix/client/unstable/im.nheko.summary/rooms/{roomIdOrAlias}/summary", a.optionalAuth(a.getRoomSummary))
	rt.Client(get, "/user/{userId}/rooms/{roomId}/tags", a.auth(a.getTags))
	rt.Client(put, "/user/{userId}/rooms/{roomId}/tags/{tag}", a.auth(a.putTag))
	rt.Client(del, "/user/{userId}/rooms/{roomId}/tags/{tag}", a.auth(a.deleteTag))
	rt.Client(post, "/rooms/{roomId}/report/{eventId}", a.auth(a.reportEvent))
	rt.Client(post, "/rooms/{roomId}/report", a.auth(a.reportRoom))
	rt.Client(post, "/users/{userId}/report", a.auth(a.reportUser))
	rt.Client(post, "/account/3pid", a.auth(a.addThreePID))
	rt.Client(post, "/account/3pid/add", a.auth(a.addThreePID))
	rt.Client(post, "/account/3pid/bind", a.auth(a.bindThreePID))
	rt.Client(post, "/account/3pid/delete", a.auth(a.removeThreePID))
	rt.Client(post, "/account/3pid/unbind", a.auth(a.removeThreePID))
	for _, p := range []string{"/account/3pid", "/register", "/account/password"} {
		rt.Client(post, p+"/{medium:email|msisdn}/requestToken", h(a.requestThreePIDToken))
	}
	rt.Client(get, "/voip/turnServer", a.auth(a.turnServer))

	// Third-party networks (none are bridged).
	rt.Client(get, "/thirdparty/protocols", a.auth(a.thirdPartyProtocols))
	rt.Client(get, "/thirdparty/protocol/{protocol}", a.auth(a.thirdPartyProtocol))
	rt.Client(get, "/thirdparty/location/{protocol}", a.auth(a.thirdPartyLookup("location")))
	rt.Client(get, "/thirdparty/user/{protocol}", a.auth(a.thirdPartyLookup("user")))
	rt.Client(get, "/thirdparty/location", a.auth(a.thirdPartyLookup("location")))
	rt.Client(get, "/thirdparty/user", a.auth(a.thirdPartyLookup("user")))

	// Application services (appservice.go).
	rt.V1(post, "/appservice/{appserviceId}/ping", a.auth(a.pingAppService))
	rt.Client(put, "/directory/list/appservice/{networkId}/{roomId}", a.auth(a.putAppServiceRoomVisibility))
	rt.Exact(get, "/_synapse/admin/v1/appservices", a.authn.AdminJSON(a.adminAppServices))

	// Shared-secret registration and the Synapse-compatible admin API.
	a.admin.Register(rt)
}
