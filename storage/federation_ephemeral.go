package storage

import (
	"context"
	"fmt"
)

// Who typing, receipts and presence go to over federation, and whose
// presence other servers may tell this one.

// ServersSharingRooms lists the servers with a member joined to a room the
// user is joined to (the user's own server included), sorted: where the
// user's presence goes.
func (db *DB) ServersSharingRooms(ctx context.Context, userID string) ([]string, error) {
	out, err := queryStrings(ctx, db.q(), `SELECT DISTINCT `+userIDServer("o.state_key")+` AS server FROM current_state me
		JOIN current_state o ON o.room_nid = me.room_nid AND o.type = 'm.room.member' AND o.membership = 'join'
		WHERE me.type = 'm.room.member' AND me.state_key = $1 AND me.membership = 'join' ORDER BY server`, userID)
	if err != nil {
		return nil, fmt.Errorf("listing the servers sharing a room with %s: %w", userID, err)
	}
	return out, nil
}

// SharesRoomWithServer reports whether the user is joined to a room where
// a user of server is joined too.
func (db *DB) SharesRoomWithServer(ctx context.Context, userID, server string) (bool, error) {
	var ok bool
	err := db.q().QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM current_state me
		JOIN current_state o ON o.room_nid = me.room_nid AND o.type = 'm.room.member' AND o.membership = 'join'
			AND `+userIDServer("o.state_key")+` = $2
		WHERE me.type = 'm.room.member' AND me.state_key = $1 AND me.membership = 'join')`, userID, server).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("checking the rooms of %s: %w", userID, err)
	}
	return ok, nil
}
