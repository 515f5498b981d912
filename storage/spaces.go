package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// RoomPreview is what the space hierarchy and room summaries show of a
// room, read from its current state: the directory fields plus the room
// version, the encryption algorithm and the join rules' allow list.
type RoomPreview struct {
	DirectoryRoom
	NID        int64
	Version    string
	Encryption string // "" when the room is not encrypted
	// Allow is content.allow of the join rules (restricted rooms), raw JSON;
	// nil when absent or not an array.
	Allow json.RawMessage
}

// stateJSONArray is stateString for an array field: its JSON text, or NULL.
func stateJSONArray(typ, field string) string {
	return currentStateSubquery(typ, jsonArray("e.json", "content", field))
}

// roomPreviewQuery reads one room's preview; like publishedRoomsQuery every
// column is an index lookup on current_state's primary key.
var roomPreviewQuery = `SELECT r.room_nid, r.room_id, r.room_version,
		(SELECT COUNT(*) FROM current_state m
			WHERE m.room_nid = r.room_nid AND m.type = 'm.room.member' AND m.membership = 'join'),
		` + stateString("m.room.name", "name") + `,
		` + stateString("m.room.topic", "topic") + `,
		` + stateString("m.room.avatar", "url") + `,
		` + stateString("m.room.canonical_alias", "alias") + `,
		` + stateValueOf("m.room.join_rules") + `,
		` + stateValueOf("m.room.history_visibility") + `,
		` + stateString("m.room.guest_access", "guest_access") + `,
		` + stateString("m.room.create", "type") + `,
		` + stateString("m.room.encryption", "algorithm") + `,
		` + stateJSONArray("m.room.join_rules", "allow") + `
	FROM rooms r WHERE r.room_id = $1`

// RoomPreview reads the preview of a room; ErrNotFound for unknown rooms.
func (db *DB) RoomPreview(ctx context.Context, roomID string) (*RoomPreview, error) {
	var p RoomPreview
	var name, topic, avatar, alias, joinRule, history, guest, roomType, enc, allow sql.NullString
	err := db.q().QueryRowContext(ctx, roomPreviewQuery, roomID).Scan(&p.NID, &p.RoomID, &p.Version, &p.JoinedMembers,
		&name, &topic, &avatar, &alias, &joinRule, &history, &guest, &roomType, &enc, &allow)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading room preview: %w", err)
	}
	p.Name, p.Topic, p.AvatarURL, p.CanonicalAlias = name.String, topic.String, avatar.String, alias.String
	p.JoinRule, p.HistoryVisibility, p.GuestAccess, p.RoomType = joinRule.String, history.String, guest.String, roomType.String
	p.Encryption = enc.String
	if allow.Valid {
		p.Allow = json.RawMessage(allow.String)
	}
	return &p, nil
}
