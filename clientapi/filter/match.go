package filter

import (
	"encoding/json"
	"strings"
)

// matchType matches an event type against a pattern where '*' matches any run of characters.
func matchType(pattern, typ string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == typ
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(typ, parts[0]) {
		return false
	}
	rest := typ[len(parts[0]):]
	for i, p := range parts[1:] {
		if i == len(parts)-2 {
			return strings.HasSuffix(rest, p)
		}
		j := strings.Index(rest, p)
		if j < 0 {
			return false
		}
		rest = rest[j+len(p):]
	}
	return true
}

func anyMatch(patterns []string, typ string) bool {
	for _, p := range patterns {
		if matchType(p, typ) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Matches reports whether an event of typ from sender passes the filter.
func (f *EventFilter) Matches(typ, sender string) bool {
	if f == nil {
		return true
	}
	if anyMatch(f.NotTypes, typ) || contains(f.NotSenders, sender) {
		return false
	}
	if f.Types != nil && !anyMatch(*f.Types, typ) {
		return false
	}
	if f.Senders != nil && !contains(*f.Senders, sender) {
		return false
	}
	return true
}

// Matches reports whether a room event passes the filter (type, sender,
// room and contains_url).
func (f *RoomEventFilter) Matches(roomID, typ, sender string, content json.RawMessage) bool {
	if f == nil {
		return true
	}
	if !f.EventFilter.Matches(typ, sender) || contains(f.NotRooms, roomID) {
		return false
	}
	if f.Rooms != nil && !contains(*f.Rooms, roomID) {
		return false
	}
	if f.ContainsURL != nil {
		var c struct {
			URL *string `json:"url"`
		}
		json.Unmarshal(content, &c)
		if (c.URL != nil) != *f.ContainsURL {
			return false
		}
	}
	return true
}

// LimitOr returns the filter's limit, or def when unset.
func (f *RoomEventFilter) LimitOr(def int) int {
	if f == nil || f.Limit == nil {
		return def
	}
	return *f.Limit
}
