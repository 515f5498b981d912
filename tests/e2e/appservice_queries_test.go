package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"
)

// queryHandler creates the ghosts and rooms it is asked about.
type queryHandler struct {
	b       *bridge
	users   []id.UserID
	aliases []id.RoomAlias
}

func (q *queryHandler) QueryUser(userID id.UserID) bool {
	q.users = append(q.users, userID)
	if userID != "@bridge_known:hs.test" {
		return false
	}
	return q.b.as.Intent(userID).EnsureRegistered(context.Background()) == nil
}

func (q *queryHandler) QueryAlias(alias id.RoomAlias) bool {
	q.aliases = append(q.aliases, alias)
	if alias != "#bridge_portal:hs.test" {
		return false
	}
	_, err := q.b.as.BotIntent().CreateRoom(context.Background(), &mautrix.ReqCreateRoom{RoomAliasName: "bridge_portal", Preset: "public_chat"})
	return err == nil
}

var _ appservice.QueryHandler = (*queryHandler)(nil)

// TestAppServiceQueries: unknown users and aliases of a namespace are
// asked of the appservice, which may create them; third-party protocols
// and lookups are answered by the appservices.
func TestAppServiceQueries(t *testing.T) {
	b := newBridge(t, "bridge")
	b.reg.Protocols = []string{"gitter"}
	s := startWithAppServices(t, fastAppServices, b.reg)
	b.attach(s)
	qh := &queryHandler{b: b}
	b.as.QueryHandler = qh
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken

	// Users: known to the bridge (created on demand), unknown, outside.
	r := do(t, "GET", v3(s, "profile", "@bridge_known:hs.test"), tok, nil).want(t, 200, "")
	if r.Body["displayname"] == nil {
		t.Fatalf("profile of a queried ghost = %s", r.Raw)
	}
	do(t, "GET", v3(s, "profile", "@bridge_unknown:hs.test"), tok, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "GET", v3(s, "profile", "@nobody:hs.test"), tok, nil).want(t, 404, "M_NOT_FOUND")
	if len(qh.users) != 2 {
		t.Fatalf("bridge was asked about %v", qh.users)
	}
	// Aliases.
	r = do(t, "GET", v3(s, "directory", "room", "#bridge_portal:hs.test"), tok, nil).want(t, 200, "")
	if r.Body["room_id"] == nil {
		t.Fatalf("alias lookup = %s", r.Raw)
	}
	do(t, "GET", v3(s, "directory", "room", "#bridge_none:hs.test"), tok, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "GET", v3(s, "directory", "room", "#other:hs.test"), tok, nil).want(t, 404, "M_NOT_FOUND")
	if len(qh.aliases) != 2 {
		t.Fatalf("bridge was asked about %v", qh.aliases)
	}

	// Third-party protocols, as the bridge describes them.
	proto := map[string]any{
		"user_fields": []string{"username"}, "location_fields": []string{"room"}, "icon": "mxc://hs.test/gitter",
		"field_types": map[string]any{"username": map[string]any{"regexp": "@[^@]+", "placeholder": "@user"}, "room": map[string]any{"regexp": ".+", "placeholder": "org/room"}},
		"instances":   []any{map[string]any{"desc": "Gitter", "network_id": "gitter", "fields": map[string]any{}}},
	}
	b.thirdParty = map[string]any{
		"/_matrix/app/v1/thirdparty/protocol/gitter":                   []any(nil),
		"/_matrix/app/v1/thirdparty/location/gitter?room=org%2Fdev":    []any{map[string]any{"alias": "#bridge_dev:hs.test", "protocol": "gitter", "fields": map[string]any{"room": "org/dev"}}},
		"/_matrix/app/v1/thirdparty/user?userid=%40bridge_x%3Ahs.test": []any{map[string]any{"userid": "@bridge_x:hs.test", "protocol": "gitter", "fields": map[string]any{"username": "@x"}}},
	}
	b.thirdParty["/_matrix/app/v1/thirdparty/protocol/gitter"] = proto
	r = do(t, "GET", v3(s, "thirdparty", "protocols"), tok, nil).want(t, 200, "")
	var protocols map[string]map[string]any
	json.Unmarshal(r.Raw, &protocols)
	g := protocols["gitter"]
	if g == nil || g["icon"] != "mxc://hs.test/gitter" {
		t.Fatalf("protocols = %s", r.Raw)
	}
	inst := g["instances"].([]any)[0].(map[string]any)
	if inst["appservice_id"] != "bridge" || inst["network_id"] != "gitter" {
		t.Fatalf("instance = %v", inst)
	}
	r = do(t, "GET", v3(s, "thirdparty", "protocol", "gitter"), tok, nil).want(t, 200, "")
	if json.Unmarshal(r.Raw, &g); g["icon"] != "mxc://hs.test/gitter" {
		t.Fatalf("protocol = %s", r.Raw)
	}
	do(t, "GET", v3(s, "thirdparty", "protocol", "irc"), tok, nil).want(t, 404, "M_NOT_FOUND")
	r = do(t, "GET", v3(s, "thirdparty", "location", "gitter")+"?"+url.Values{"room": {"org/dev"}}.Encode(), tok, nil).want(t, 200, "")
	var found []map[string]any
	if json.Unmarshal(r.Raw, &found); len(found) != 1 || found[0]["alias"] != "#bridge_dev:hs.test" {
		t.Fatalf("location lookup = %s", r.Raw)
	}
	r = do(t, "GET", v3(s, "thirdparty", "user")+"?"+url.Values{"userid": {"@bridge_x:hs.test"}}.Encode(), tok, nil).want(t, 200, "")
	if json.Unmarshal(r.Raw, &found); len(found) != 1 || found[0]["userid"] != "@bridge_x:hs.test" {
		t.Fatalf("user lookup = %s", r.Raw)
	}
	// A protocol nobody bridges, or a bridge that finds nothing: [].
	if r := do(t, "GET", v3(s, "thirdparty", "user", "irc")+"?x=1", tok, nil).want(t, 200, ""); string(r.Raw) != "[]" {
		t.Fatalf("lookup under an unknown protocol = %s", r.Raw)
	}
	if r := do(t, "GET", v3(s, "thirdparty", "location", "gitter")+"?room=none", tok, nil).want(t, 200, ""); string(r.Raw) != "[]" {
		t.Fatalf("lookup the bridge answers 404 = %s", r.Raw)
	}
	do(t, "GET", v3(s, "thirdparty", "protocols"), "", nil).want(t, 401, "M_MISSING_TOKEN")
}
