// Package pushgateway delivers push notifications to the push gateways of
// users' HTTP pushers (the Push Gateway API, POST /_matrix/push/v1/notify).
//
// The roomserver stores every notifying outcome of a user's push rules in
// push_actions, at the event's stream position; each pusher persists the
// position up to which it has dealt with them. A background Sender, woken by
// every stream advance, sends what lies beyond that position, one request
// per event, in order, and advances the position only once the gateway has
// taken the notification, so a gateway that is down delays notifications but
// does not lose them.
//
// The package reads and writes storage only; the client API validates and
// stores pushers (clientapi/pushers.go) with the rules exported here.
package pushgateway

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"matrixhs/storage"
)

// NotifyPath is the path every HTTP pusher URL ends in.
const NotifyPath = "/_matrix/push/v1/notify"

// FormatEventIDOnly is the data.format that limits a notification to the
// event's ID, room, counts and priority; without it the full format is sent.
const FormatEventIDOnly = "event_id_only"

// ValidateURL checks a pusher's data.url: an absolute http or https URL whose
// path ends in /_matrix/push/v1/notify. Plain http is allowed (as Synapse
// does): gateways often run beside the homeserver on a private network. As
// in Synapse, the address is not checked here but when sending: nothing is
// sent outside the public internet unless ip_range_whitelist allows it.
func ValidateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("data.url is not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("data.url must be an http or https URL")
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("data.url has no host")
	}
	if u.User != nil {
		return fmt.Errorf("data.url must not carry credentials")
	}
	if !strings.HasSuffix(u.Path, NotifyPath) {
		return fmt.Errorf("data.url must have a path ending in %s", NotifyPath)
	}
	return nil
}

// request is the body of POST /_matrix/push/v1/notify.
type request struct {
	Notification notification `json:"notification"`
}

type notification struct {
	EventID           string          `json:"event_id,omitempty"`
	RoomID            string          `json:"room_id,omitempty"`
	Type              string          `json:"type,omitempty"`
	Sender            string          `json:"sender,omitempty"`
	SenderDisplayName string          `json:"sender_display_name,omitempty"`
	RoomName          string          `json:"room_name,omitempty"`
	RoomAlias         string          `json:"room_alias,omitempty"`
	UserIsTarget      *bool           `json:"user_is_target,omitempty"`
	Prio              string          `json:"prio,omitempty"`
	Content           json.RawMessage `json:"content,omitempty"`
	Counts            counts          `json:"counts"`
	Devices           []device        `json:"devices"`
}

// counts omits zero values, as the spec asks. Missed calls are not tracked.
type counts struct {
	Unread      int `json:"unread,omitempty"`
	MissedCalls int `json:"missed_calls,omitempty"`
}

type device struct {
	AppID     string                     `json:"app_id"`
	PushKey   string                     `json:"pushkey"`
	PushKeyTS int64                      `json:"pushkey_ts,omitempty"`
	Data      map[string]json.RawMessage `json:"data"`
	Tweaks    map[string]any             `json:"tweaks"`
}

// pusherData is the part of a pusher's data the sender interprets.
type pusherData struct {
	URL    string `json:"url"`
	Format string `json:"format"`
}

func parseData(raw []byte) (pusherData, map[string]json.RawMessage, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(raw, &all); err != nil {
		return pusherData{}, nil, fmt.Errorf("pusher data: %w", err)
	}
	var d pusherData
	if err := json.Unmarshal(raw, &d); err != nil {
		return pusherData{}, nil, fmt.Errorf("pusher data: %w", err)
	}
	delete(all, "url")
	if all == nil {
		all = map[string]json.RawMessage{}
	}
	return d, all, nil
}

// tweaks collects the set_tweak actions of a push rule outcome; a tweak
// without a value (highlight) is true.
func tweaks(actions []byte) map[string]any {
	out := map[string]any{}
	var list []json.RawMessage
	if json.Unmarshal(actions, &list) != nil {
		return out
	}
	for _, a := range list {
		var t struct {
			SetTweak string          `json:"set_tweak"`
			Value    json.RawMessage `json:"value"`
		}
		if json.Unmarshal(a, &t) != nil || t.SetTweak == "" {
			continue
		}
		if len(t.Value) == 0 {
			out[t.SetTweak] = true
			continue
		}
		out[t.SetTweak] = t.Value
	}
	return out
}

// roomInfo is what the full format says about the room and the sender.
type roomInfo struct {
	name, alias, senderName string
}

func parseRoomState(st storage.PushRoomState) roomInfo {
	return roomInfo{
		name:       contentString(st.Name, "name"),
		alias:      contentString(st.CanonicalAlias, "alias"),
		senderName: contentString(st.SenderMember, "displayname"),
	}
}

// contentString is a string field of an event's content ("" when absent).
func contentString(eventJSON []byte, field string) string {
	if eventJSON == nil {
		return ""
	}
	var ev struct {
		Content map[string]json.RawMessage `json:"content"`
	}
	var s string
	if json.Unmarshal(eventJSON, &ev) != nil || json.Unmarshal(ev.Content[field], &s) != nil {
		return ""
	}
	return s
}

// priority is high for highlights, messages (encrypted ones included) and
// anything that rings; low for the rest (state changes, reactions...).
func priority(evType string, highlight bool, tw map[string]any) string {
	if _, sound := tw["sound"]; highlight || sound {
		return "high"
	}
	switch evType {
	case "m.room.message", "m.room.encrypted", "m.sticker", "m.call.invite":
		return "high"
	}
	return "low"
}

// buildRequest renders the gateway request for one pending push of p.
// info is only consulted for the full format.
func buildRequest(p *storage.Pusher, data pusherData, devData map[string]json.RawMessage, pp *storage.PendingPush, unread int, info roomInfo) request {
	tw := tweaks(pp.Actions)
	ev := &pp.Event
	n := notification{
		EventID: ev.EventID,
		RoomID:  ev.RoomID,
		Prio:    priority(ev.Type, pp.Highlight, tw),
		Counts:  counts{Unread: unread},
		Devices: []device{{
			AppID: p.AppID, PushKey: p.PushKey, PushKeyTS: p.PushKeyTS / 1000, Data: devData, Tweaks: tw,
		}},
	}
	if data.Format != FormatEventIDOnly {
		n.Type, n.Sender = ev.Type, ev.Sender
		n.SenderDisplayName, n.RoomName, n.RoomAlias = info.senderName, info.name, info.alias
		if ev.Type == "m.room.member" && ev.StateKey != nil {
			target := *ev.StateKey == p.UserID
			n.UserIsTarget = &target
		}
		var body struct {
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal(ev.JSON, &body) == nil && len(body.Content) > 0 && string(body.Content) != "{}" && string(body.Content) != "null" {
			n.Content = body.Content
		}
	}
	return request{Notification: n}
}
