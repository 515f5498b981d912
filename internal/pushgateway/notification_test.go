package pushgateway

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
	"time"

	"matrixhs/storage"
)

func TestPushValidateURL(t *testing.T) {
	good := []string{
		"https://push.example.org/_matrix/push/v1/notify",
		"http://10.0.0.5:5000/_matrix/push/v1/notify",
		"https://example.org/sygnal/_matrix/push/v1/notify",
	}
	for _, u := range good {
		if err := ValidateURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	bad := []string{
		"", "push.example.org/_matrix/push/v1/notify", "ftp://example.org/_matrix/push/v1/notify",
		"https://example.org/", "https://example.org/_matrix/push/v1/notify/extra", "https:///_matrix/push/v1/notify",
		"https://user:pw@example.org/_matrix/push/v1/notify", "://bad",
	}
	for _, u := range bad {
		if err := ValidateURL(u); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

func TestPushTweaksAndPriority(t *testing.T) {
	tw := tweaks([]byte(`["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"},{"set_tweak":"x","value":false}]`))
	got, _ := json.Marshal(tw)
	if string(got) != `{"highlight":true,"sound":"default","x":false}` {
		t.Fatalf("tweaks = %s", got)
	}
	if got := tweaks([]byte(`["notify"]`)); len(got) != 0 {
		t.Fatalf("tweaks of plain notify = %v", got)
	}
	cases := []struct {
		typ  string
		hl   bool
		tw   map[string]any
		want string
	}{
		{"m.room.message", false, nil, "high"},
		{"m.room.encrypted", false, nil, "high"},
		{"m.room.member", false, map[string]any{"sound": "default"}, "high"},
		{"m.reaction", true, nil, "high"},
		{"m.room.member", false, nil, "low"},
		{"m.room.tombstone", false, map[string]any{"highlight": false}, "low"},
	}
	for _, c := range cases {
		if got := priority(c.typ, c.hl, c.tw); got != c.want {
			t.Errorf("priority(%s, %v, %v) = %s, want %s", c.typ, c.hl, c.tw, got, c.want)
		}
	}
}

func TestPushBuildRequest(t *testing.T) {
	invitee := "@bob:x"
	p := &storage.Pusher{
		PusherKey: storage.PusherKey{UserID: "@bob:x", AppID: "org.example.app", PushKey: "pk"},
		PushKeyTS: 1_700_000_000_123,
	}
	pp := &storage.PendingPush{
		StreamPos: 9, Highlight: false, Actions: []byte(`["notify",{"set_tweak":"sound","value":"default"}]`),
		Event: storage.Event{EventID: "$e", RoomID: "!r:x", Type: "m.room.member", StateKey: &invitee, Sender: "@alice:x",
			JSON: []byte(`{"type":"m.room.member","content":{"membership":"invite"}}`)},
	}
	info := roomInfo{name: "Lounge", alias: "#lounge:x", senderName: "Alice"}

	data, devData, err := parseData([]byte(`{"url":"http://gw/_matrix/push/v1/notify","brand":"x"}`))
	if err != nil || data.Format != "" {
		t.Fatal(data, err)
	}
	full, _ := json.Marshal(buildRequest(p, data, devData, pp, 3, info))
	var got, want any
	json.Unmarshal(full, &got)
	json.Unmarshal([]byte(`{"notification":{
		"event_id":"$e","room_id":"!r:x","type":"m.room.member","sender":"@alice:x","sender_display_name":"Alice",
		"room_name":"Lounge","room_alias":"#lounge:x","user_is_target":true,"prio":"high",
		"content":{"membership":"invite"},"counts":{"unread":3},
		"devices":[{"app_id":"org.example.app","pushkey":"pk","pushkey_ts":1700000000,"data":{"brand":"x"},"tweaks":{"sound":"default"}}]}}`), &want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("full format:\n got  %s", full)
	}

	data, devData, _ = parseData([]byte(`{"url":"http://gw/_matrix/push/v1/notify","format":"event_id_only"}`))
	pp.Event.Type, pp.Event.StateKey = "m.room.message", nil
	pp.Actions = []byte(`["notify"]`)
	short, _ := json.Marshal(buildRequest(p, data, devData, pp, 0, info))
	json.Unmarshal(short, &got)
	json.Unmarshal([]byte(`{"notification":{"event_id":"$e","room_id":"!r:x","prio":"high","counts":{},
		"devices":[{"app_id":"org.example.app","pushkey":"pk","pushkey_ts":1700000000,"data":{"format":"event_id_only"},"tweaks":{}}]}}`), &want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("event_id_only format:\n got  %s", short)
	}
}

func TestPushRetryAfter(t *testing.T) {
	h := http.Header{}
	if retryAfter(h) != 0 {
		t.Fatal("no header")
	}
	h.Set("Retry-After", "7")
	if retryAfter(h) != 7*time.Second {
		t.Fatal("seconds")
	}
	h.Set("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")
	if retryAfter(h) != 0 {
		t.Fatal("dates are ignored")
	}
}
