package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// DirectoryRoom is a published room with what the public room directory
// shows of it, read from its current state.
type DirectoryRoom struct {
	RoomID            string
	JoinedMembers     int
	Name              string
	Topic             string
	AvatarURL         string
	CanonicalAlias    string
	JoinRule          string // "" when the room has no m.room.join_rules
	HistoryVisibility string
	GuestAccess       string
	RoomType          string // the create event's "type", "" for none
}

// stateString is a correlated subquery reading a string field of the content
// of one current state event (state key "") of the room r; NULL when the
// event is absent, redacted away or the field is not a string. typ and field
// are constants of this package, never user input.
func stateString(typ, field string) string {
	return currentStateSubquery(typ, jsonText("e.json", "content", field))
}

// stateValueOf is stateString for the types whose field is a column
// (events.state_value): join rules and history visibility.
func stateValueOf(typ string) string {
	return currentStateSubquery(typ, "e.state_value")
}

// currentStateSubquery selects expr of the room r's current state event of
// type typ (state key "").
func currentStateSubquery(typ, expr string) string {
	return `(SELECT ` + expr + `
		FROM current_state c JOIN events e ON e.event_nid = c.event_nid
		WHERE c.room_nid = r.room_nid AND c.type = '` + typ + `' AND c.state_key = '')`
}

// publishedRoomsQuery lists published rooms, one row each: every column is
// an index lookup on current_state's primary key (room_nid, type, state_key).
var publishedRoomsQuery = `SELECT room_id, joined, name, topic, avatar, alias, join_rule, history, guest, room_type FROM (
	SELECT r.room_id AS room_id,
		(SELECT COUNT(*) FROM current_state m
			WHERE m.room_nid = r.room_nid AND m.type = 'm.room.member' AND m.membership = 'join') AS joined,
		` + stateString("m.room.name", "name") + ` AS name,
		` + stateString("m.room.topic", "topic") + ` AS topic,
		` + stateString("m.room.avatar", "url") + ` AS avatar,
		` + stateString("m.room.canonical_alias", "alias") + ` AS alias,
		` + stateValueOf("m.room.join_rules") + ` AS join_rule,
		` + stateValueOf("m.room.history_visibility") + ` AS history,
		` + stateString("m.room.guest_access", "guest_access") + ` AS guest,
		` + stateString("m.room.create", "type") + ` AS room_type
	FROM rooms r WHERE r.published = 1
) published ORDER BY joined DESC, room_id ASC`

// PublishedRooms lists the rooms published in the room directory with their
// directory fields, largest (by joined members) first, then by room ID.
func (db *DB) PublishedRooms(ctx context.Context) ([]DirectoryRoom, error) {
	rows, err := db.q().QueryContext(ctx, publishedRoomsQuery)
	if err != nil {
		return nil, fmt.Errorf("listing published rooms: %w", err)
	}
	defer rows.Close()
	var out []DirectoryRoom
	for rows.Next() {
		var d DirectoryRoom
		var name, topic, avatar, alias, joinRule, history, guest, roomType sql.NullString
		if err := rows.Scan(&d.RoomID, &d.JoinedMembers, &name, &topic, &avatar, &alias, &joinRule, &history, &guest, &roomType); err != nil {
			return nil, fmt.Errorf("reading published room: %w", err)
		}
		d.Name, d.Topic, d.AvatarURL, d.CanonicalAlias = name.String, topic.String, avatar.String, alias.String
		d.JoinRule, d.HistoryVisibility, d.GuestAccess, d.RoomType = joinRule.String, history.String, guest.String, roomType.String
		out = append(out, d)
	}
	return out, rows.Err()
}

// JoinedMemberEvents returns the user's current member events in every room
// they are joined to, in room order (for propagating profile changes).
func (db *DB) JoinedMemberEvents(ctx context.Context, userID string) ([]Event, error) {
	return scanEvents(db.q().QueryContext(ctx, `SELECT `+eventColumns+` FROM current_state c
		JOIN events e ON e.event_nid = c.event_nid JOIN rooms r ON r.room_nid = e.room_nid
		WHERE c.type = 'm.room.member' AND c.state_key = $1 AND c.membership = 'join' ORDER BY c.room_nid`, userID))
}
