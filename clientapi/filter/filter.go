// Package filter defines the client-API filter (POST /user/{userId}/filter,
// the sync "filter" parameter and /messages filters) and validates it.
package filter

import (
	"fmt"
	"strings"
)

// EventFilter selects events by type and sender.
type EventFilter struct {
	Limit      *int      `json:"limit,omitempty"`
	NotSenders []string  `json:"not_senders,omitempty"`
	NotTypes   []string  `json:"not_types,omitempty"`
	Senders    *[]string `json:"senders,omitempty"`
	Types      *[]string `json:"types,omitempty"`
}

// RoomEventFilter is an EventFilter with room and relation criteria.
type RoomEventFilter struct {
	EventFilter
	NotRooms                []string  `json:"not_rooms,omitempty"`
	Rooms                   *[]string `json:"rooms,omitempty"`
	ContainsURL             *bool     `json:"contains_url,omitempty"`
	IncludeRedundantMembers bool      `json:"include_redundant_members,omitempty"`
	LazyLoadMembers         bool      `json:"lazy_load_members,omitempty"`
	UnreadThreadNotifs      bool      `json:"unread_thread_notifications,omitempty"`
	RelTypes                []string  `json:"org.matrix.msc3874.rel_types,omitempty"`
	NotRelTypes             []string  `json:"org.matrix.msc3874.not_rel_types,omitempty"`
}

// RoomFilter selects what of rooms a sync returns.
type RoomFilter struct {
	AccountData  *RoomEventFilter `json:"account_data,omitempty"`
	Ephemeral    *RoomEventFilter `json:"ephemeral,omitempty"`
	IncludeLeave bool             `json:"include_leave,omitempty"`
	NotRooms     []string         `json:"not_rooms,omitempty"`
	Rooms        *[]string        `json:"rooms,omitempty"`
	State        *RoomEventFilter `json:"state,omitempty"`
	Timeline     *RoomEventFilter `json:"timeline,omitempty"`
}

// Filter is a whole filter definition.
type Filter struct {
	AccountData *EventFilter `json:"account_data,omitempty"`
	EventFields []string     `json:"event_fields,omitempty"`
	EventFormat string       `json:"event_format,omitempty"`
	Presence    *EventFilter `json:"presence,omitempty"`
	Room        *RoomFilter  `json:"room,omitempty"`
}

// Validate checks the values the JSON types cannot.
func (f *Filter) Validate() error {
	switch f.EventFormat {
	case "", "client", "federation":
	default:
		return fmt.Errorf("event_format must be client or federation")
	}
	for _, field := range f.EventFields {
		if field == "" || strings.HasPrefix(field, ".") || strings.HasSuffix(field, ".") {
			return fmt.Errorf("event_fields entry %q is not a dotted field path", field)
		}
	}
	check := func(name string, e *EventFilter) error {
		if e != nil && e.Limit != nil && *e.Limit < 0 {
			return fmt.Errorf("%s.limit must not be negative", name)
		}
		return nil
	}
	if err := check("account_data", f.AccountData); err != nil {
		return err
	}
	if err := check("presence", f.Presence); err != nil {
		return err
	}
	if f.Room != nil {
		for name, rf := range map[string]*RoomEventFilter{
			"room.account_data": f.Room.AccountData, "room.ephemeral": f.Room.Ephemeral,
			"room.state": f.Room.State, "room.timeline": f.Room.Timeline,
		} {
			if rf != nil {
				if err := check(name, &rf.EventFilter); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
