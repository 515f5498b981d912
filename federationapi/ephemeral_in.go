package federationapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"matrixhs/federationapi/fedauth"
	"matrixhs/internal/ephemeral"
	"matrixhs/roomserver"
)

// Bounds on what one EDU may make this server do: entries past them are
// ignored (a transaction already carries at most 100 EDUs within the body
// limit).
const (
	maxReceiptsPerEDU  = 1000 // user entries of an m.receipt
	maxEventIDsPerRcpt = 5    // event IDs looked at per receipt
	maxPresencePerEDU  = 1000 // push entries of an m.presence
	maxStatusMsgBytes  = 2048 // a longer status message is refused
	maxTypingEDUBytes  = 4096 // an m.typing is three short fields
)

// errIgnored marks an EDU (or part) that is well-formed but not taken; the
// dispatcher logs it at debug level.
var errIgnored = errors.New("ignored")

func ignored(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errIgnored, fmt.Sprintf(format, args...))
}

// ephemeralIn applies other servers' typing, receipt and presence EDUs.
type ephemeralIn struct {
	f    *API
	eph  *ephemeral.Service
	opts EDUOptions
	log  logrus.FieldLogger
}

// userOf reports whether userID is a valid user ID of origin.
func userOf(origin spec.ServerName, userID string) bool {
	id, err := spec.NewUserID(userID, true)
	return err == nil && id.Domain() == origin
}

// roomFor loads a room an EDU from origin is about, if this server is in
// it and its server ACL lets origin in (else an errIgnored).
func (in *ephemeralIn) roomFor(ctx context.Context, origin spec.ServerName, roomID string) (*roomserver.FederationRoom, error) {
	if len(roomID) < 2 || len(roomID) > 255 || roomID[0] != '!' {
		return nil, ignored("bad room ID")
	}
	fr, err := in.f.rooms.rs.FederationRoom(ctx, roomID)
	if errors.Is(err, roomserver.ErrRoomNotFound) {
		return nil, ignored("unknown room %s", roomID)
	}
	if err != nil {
		return nil, err
	}
	if !fr.LocalJoined {
		return nil, ignored("this server is not in room %s", roomID)
	}
	if fr.ACL != nil && !fedauth.ParseACL(fr.ACL).Allows(origin) {
		return nil, ignored("%s is banned from room %s by its server ACL", origin, roomID)
	}
	return fr, nil
}

// joined reports whether a user is joined to a room now.
func (in *ephemeralIn) joined(ctx context.Context, roomID, userID string) (bool, error) {
	m, err := in.f.rooms.rs.Membership(ctx, roomID, userID)
	if err != nil {
		return false, err
	}
	return m == spec.Join, nil
}

// typing applies an m.typing EDU: {"room_id", "user_id", "typing"}.
func (in *ephemeralIn) typing(ctx context.Context, origin spec.ServerName, content json.RawMessage) error {
	if len(content) > maxTypingEDUBytes {
		return ignored("m.typing of %d bytes", len(content))
	}
	var c struct {
		RoomID string `json:"room_id"`
		UserID string `json:"user_id"`
		Typing *bool  `json:"typing"`
	}
	if err := json.Unmarshal(content, &c); err != nil || c.Typing == nil {
		return ignored("malformed m.typing")
	}
	if !userOf(origin, c.UserID) {
		return ignored("m.typing from %s for user %q", origin, c.UserID)
	}
	fr, err := in.roomFor(ctx, origin, c.RoomID)
	if err != nil {
		return err
	}
	if ok, err := in.joined(ctx, c.RoomID, c.UserID); err != nil || !ok {
		if err != nil {
			return err
		}
		return ignored("%s is not joined to %s", c.UserID, c.RoomID)
	}
	in.eph.SetRemoteTyping(fr.NID, c.RoomID, c.UserID, *c.Typing, in.opts.RemoteTypingTimeout)
	return nil
}

// receiptEntry is one user's receipt in an m.receipt EDU.
type receiptEntry struct {
	EventIDs []string        `json:"event_ids"`
	Data     json.RawMessage `json:"data"`
}

// receiptData is what a receipt's data may say; other fields are ignored,
// and wrong types count as absent (as Synapse reads thread_id).
func receiptData(raw json.RawMessage) (ts int64, threadID string) {
	var d map[string]json.RawMessage
	if json.Unmarshal(raw, &d) != nil {
		return 0, ""
	}
	if json.Unmarshal(d["ts"], &ts) != nil || ts < 0 {
		ts = 0
	}
	if json.Unmarshal(d["thread_id"], &threadID) != nil {
		threadID = ""
	}
	return ts, threadID
}

// receipt applies an m.receipt EDU: {room_id: {receipt_type: {user_id:
// {"event_ids": [...], "data": {"ts", "thread_id"?}}}}}. Only m.read
// receipts are taken (private ones never travel).
func (in *ephemeralIn) receipt(ctx context.Context, origin spec.ServerName, content json.RawMessage) error {
	var rooms map[string]map[string]json.RawMessage
	if err := json.Unmarshal(content, &rooms); err != nil {
		return ignored("malformed m.receipt")
	}
	budget := maxReceiptsPerEDU
	var skipped []error
	for roomID, types := range rooms {
		raw, ok := types[ephemeral.ReceiptTypes[0]]
		if !ok || budget <= 0 {
			continue
		}
		n, err := in.roomReceipts(ctx, origin, roomID, raw, &budget)
		if errors.Is(err, errIgnored) {
			skipped = append(skipped, err)
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			skipped = append(skipped, ignored("no receipt of room %s taken", roomID))
		}
	}
	return errors.Join(skipped...)
}

// roomReceipts takes the m.read receipts of one room, spending budget.
func (in *ephemeralIn) roomReceipts(ctx context.Context, origin spec.ServerName, roomID string, raw json.RawMessage, budget *int) (int, error) {
	fr, err := in.roomFor(ctx, origin, roomID)
	if err != nil {
		return 0, err
	}
	if !fr.ServerJoined(origin) {
		return 0, ignored("%s has no member in %s", origin, roomID)
	}
	var users map[string]json.RawMessage
	if json.Unmarshal(raw, &users) != nil {
		return 0, ignored("malformed receipts of %s", roomID)
	}
	var receipts []ephemeral.Receipt
	for userID, rawEntry := range users {
		if *budget <= 0 {
			break
		}
		*budget--
		var e receiptEntry
		if !userOf(origin, userID) || json.Unmarshal(rawEntry, &e) != nil || len(e.EventIDs) == 0 {
			continue
		}
		if ok, err := in.joined(ctx, roomID, userID); err != nil || !ok {
			if err != nil {
				return 0, err
			}
			continue
		}
		ts, thread := receiptData(e.Data)
		// Each of the event IDs named (the first few): storage keeps the
		// latest of those it holds.
		for _, id := range e.EventIDs[:min(len(e.EventIDs), maxEventIDsPerRcpt)] {
			receipts = append(receipts, ephemeral.Receipt{UserID: userID, RoomID: roomID, Type: ephemeral.ReceiptTypes[0],
				EventID: id, ThreadID: thread, TS: ts})
		}
	}
	if len(receipts) == 0 {
		return 0, nil
	}
	return in.eph.PutRemoteReceipts(ctx, roomID, receipts)
}

// presencePush is one user's entry of an m.presence EDU.
type presencePush struct {
	UserID          string  `json:"user_id"`
	Presence        string  `json:"presence"`
	StatusMsg       *string `json:"status_msg"`
	LastActiveAgo   *int64  `json:"last_active_ago"`
	CurrentlyActive bool    `json:"currently_active"`
}

// presence applies an m.presence EDU: {"push": [{"user_id", "presence",
// "status_msg"?, "last_active_ago", "currently_active"?}]}, for users of
// origin who share a room with this server, when presence is on.
func (in *ephemeralIn) presence(ctx context.Context, origin spec.ServerName, content json.RawMessage) error {
	if !in.eph.PresenceEnabled() {
		return nil
	}
	var c struct {
		Push []json.RawMessage `json:"push"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return ignored("malformed m.presence")
	}
	var skipped []error
	for _, raw := range c.Push[:min(len(c.Push), maxPresencePerEDU)] {
		var p presencePush
		if json.Unmarshal(raw, &p) != nil || !userOf(origin, p.UserID) {
			skipped = append(skipped, ignored("presence entry not of a user of %s", origin))
			continue
		}
		status := ""
		if p.StatusMsg != nil {
			status = *p.StatusMsg
		}
		if len(status) > maxStatusMsgBytes {
			skipped = append(skipped, ignored("status message of %s too long", p.UserID))
			continue
		}
		shares, err := in.f.db.SharesRoomWithServer(ctx, p.UserID, string(in.f.serverName))
		if err != nil {
			return err
		}
		if !shares {
			skipped = append(skipped, ignored("%s shares no room with this server", p.UserID))
			continue
		}
		_, err = in.eph.SetRemotePresence(p.UserID, ephemeral.RemotePresence{
			Presence: p.Presence, StatusMsg: status, LastActiveAgo: p.LastActiveAgo, CurrentlyActive: p.CurrentlyActive,
		})
		if err != nil {
			skipped = append(skipped, ignored("presence of %s: %v", p.UserID, err))
		}
	}
	return errors.Join(skipped...)
}
