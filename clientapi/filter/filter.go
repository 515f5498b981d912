// Package filter defines the client-API filter (POST /user/{userId}/filter,
// the sync "filter" parameter and /messages filters) and validates it.
package filter

import (
	"fmt"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"
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

// Validate checks the values the JSON types cannot: the event format and
// fields, non-negative limits, and (as Synapse does) that rooms, not_rooms,
// senders and not_senders hold room and user IDs.
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
	if err := f.AccountData.validate("account_data"); err != nil {
		return err
	}
	if err := f.Presence.validate("presence"); err != nil {
		return err
	}
	if f.Room == nil {
		return nil
	}
	if err := roomIDs("room.rooms", f.Room.Rooms, f.Room.NotRooms); err != nil {
		return err
	}
	for _, sub := range []struct {
		name string
		f    *RoomEventFilter
	}{{"room.account_data", f.Room.AccountData}, {"room.ephemeral", f.Room.Ephemeral},
		{"room.state", f.Room.State}, {"room.timeline", f.Room.Timeline}} {
		if err := sub.f.Validate(sub.name); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks a room event filter (named name in errors) as
// Filter.Validate does; a nil filter is valid.
func (f *RoomEventFilter) Validate(name string) error {
	if f == nil {
		return nil
	}
	if err := f.EventFilter.validate(name); err != nil {
		return err
	}
	return roomIDs(name+".rooms", f.Rooms, f.NotRooms)
}

func (f *EventFilter) validate(name string) error {
	if f == nil {
		return nil
	}
	if f.Limit != nil && *f.Limit < 0 {
		return fmt.Errorf("%s.limit must not be negative", name)
	}
	var senders []string
	if f.Senders != nil {
		senders = *f.Senders
	}
	for _, list := range [][]string{senders, f.NotSenders} {
		for _, u := range list {
			if _, err := spec.NewUserID(u, true); err != nil {
				return fmt.Errorf("%s: %q is not a user ID", name, u)
			}
		}
	}
	return nil
}

// roomIDs checks a rooms / not_rooms pair.
func roomIDs(name string, rooms *[]string, notRooms []string) error {
	var in []string
	if rooms != nil {
		in = *rooms
	}
	for _, list := range [][]string{in, notRooms} {
		for _, r := range list {
			if _, err := spec.NewRoomID(r); err != nil {
				return fmt.Errorf("%s: %q is not a room ID", name, r)
			}
		}
	}
	return nil
}
