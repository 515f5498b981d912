package roomserver

// When a room is upgraded, its local members' own settings for it follow
// them to the new room, as in Synapse: their push rules for the room, the
// room's tags, and its place in m.direct.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/httputil"
	"matrixhs/roomserver/pushrules"
	"matrixhs/storage"
)

// afterTombstone carries the user state of a room's local members to the
// room a tombstone names, when that room declares this one its predecessor
// (by /upgrade or by hand: createRoom with a predecessor, then the
// tombstone). Failures are logged: the tombstone itself stands.
func (rs *Roomserver) afterTombstone(ctx context.Context, oldRoomID string, tombstone gomatrixserverlib.PDU) {
	var c struct {
		ReplacementRoom string `json:"replacement_room"`
	}
	if json.Unmarshal(tombstone.Content(), &c) != nil || c.ReplacementRoom == "" || c.ReplacementRoom == oldRoomID {
		return
	}
	newRoomID := c.ReplacementRoom
	log := httputil.Logger(ctx).WithField("room_id", oldRoomID).WithField("replacement_room", newRoomID)
	if ok, err := rs.succeeds(ctx, newRoomID, oldRoomID); err != nil || !ok {
		if err != nil {
			log.WithError(err).Warn("checking the predecessor of an upgraded room")
		}
		return
	}
	old, err := rs.room(ctx, oldRoomID)
	if err != nil {
		log.WithError(err).Warn("loading an upgraded room")
		return
	}
	if err := rs.copyUserState(ctx, rs.localMembers(old), oldRoomID, newRoomID); err != nil {
		log.WithError(err).Warn("copying push rules, tags and m.direct to an upgraded room")
	}
}

// succeeds reports whether room newRoomID names oldRoomID as predecessor.
func (rs *Roomserver) succeeds(ctx context.Context, newRoomID, oldRoomID string) (bool, error) {
	pred, err := rs.predecessorOf(ctx, newRoomID)
	return pred == oldRoomID, err
}

// predecessorOf is the room a room's create event names as its predecessor
// ("" for none, or a room this server does not know).
func (rs *Roomserver) predecessorOf(ctx context.Context, roomID string) (string, error) {
	r, err := rs.room(ctx, roomID)
	if errors.Is(err, ErrRoomNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	create, err := rs.currentEvent(ctx, r, spec.MRoomCreate, "")
	if err != nil || create == nil {
		return "", err
	}
	var cc struct {
		Predecessor struct {
			RoomID string `json:"room_id"`
		} `json:"predecessor"`
	}
	json.Unmarshal(create.Content(), &cc)
	return cc.Predecessor.RoomID, nil
}

// afterJoiningSuccessor carries users' push rules, tags and m.direct entry
// from a room's predecessor when they join it: the joining local user, or,
// when this server joins the room over federation (users nil), every local
// member of the predecessor, as Synapse does (a remote server's upgrade
// reaches this server only when its users join the new room). Failures are
// logged: the join stands.
func (rs *Roomserver) afterJoiningSuccessor(ctx context.Context, roomID string, users []string) {
	log := httputil.Logger(ctx).WithField("room_id", roomID)
	pred, err := rs.predecessorOf(ctx, roomID)
	if err != nil {
		log.WithError(err).Warn("reading the predecessor of a joined room")
		return
	}
	if pred == "" || pred == roomID {
		return
	}
	if users == nil {
		old, err := rs.room(ctx, pred)
		if err != nil {
			if !errors.Is(err, ErrRoomNotFound) {
				log.WithError(err).Warn("loading the predecessor of a joined room")
			}
			return
		}
		users = rs.localMembers(old)
	}
	if err := rs.copyUserState(ctx, users, pred, roomID); err != nil {
		log.WithError(err).Warn("copying push rules, tags and m.direct to an upgraded room")
	}
}

// localMembers are the users of this server joined to r.
func (rs *Roomserver) localMembers(r *room) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	users := make([]string, 0, len(r.local))
	for u := range r.local {
		users = append(users, u)
	}
	slices.Sort(users)
	return users
}

// copyUserState copies each user's push rules, tags and m.direct entry for
// oldRoomID to newRoomID, in one write.
func (rs *Roomserver) copyUserState(ctx context.Context, users []string, oldRoomID, newRoomID string) error {
	if len(users) == 0 {
		return nil
	}
	return rs.db.Write(ctx, func(tx *storage.Tx) error {
		for _, u := range users {
			if err := copyPushRules(ctx, tx, u, oldRoomID, newRoomID); err != nil {
				return err
			}
			if err := copyTags(ctx, tx, u, oldRoomID, newRoomID); err != nil {
				return err
			}
			if err := copyDirect(ctx, tx, u, oldRoomID, newRoomID); err != nil {
				return err
			}
		}
		tx.OnCommit(func() {
			for _, u := range users {
				rs.InvalidatePushRules(u)
			}
		})
		return nil
	})
}

func copyPushRules(ctx context.Context, tx *storage.Tx, userID, oldRoomID, newRoomID string) error {
	raw, err := tx.PushRules(ctx, userID)
	if err != nil || raw == nil {
		return err
	}
	var u pushrules.UserRules
	if err := json.Unmarshal(raw, &u); err != nil {
		return fmt.Errorf("decoding push rules of %s: %w", userID, err)
	}
	if !copyRoomRules(&u, oldRoomID, newRoomID) {
		return nil
	}
	out, err := json.Marshal(u)
	if err != nil {
		return err
	}
	_, err = tx.PutPushRules(ctx, userID, out)
	return err
}

// copyRoomRules adds, for each enabled rule about oldRoomID, the same rule
// about newRoomID, named after the new room as Synapse names it: room rules
// (whose ID is the room) and override and underride rules with a room_id
// condition. A copy replaces a rule of the same ID and otherwise comes
// first in its kind. It reports whether anything was copied.
func copyRoomRules(u *pushrules.UserRules, oldRoomID, newRoomID string) bool {
	copied := false
	add := func(list *[]pushrules.Rule, r pushrules.Rule) {
		*list = slices.DeleteFunc(*list, func(x pushrules.Rule) bool { return x.RuleID == r.RuleID })
		*list = append([]pushrules.Rule{r}, *list...)
		copied = true
	}
	for _, r := range slices.Clone(u.Room) {
		if r.Enabled && r.RuleID == oldRoomID {
			r.RuleID = newRoomID
			r.Actions = slices.Clone(r.Actions)
			add(&u.Room, r)
		}
	}
	for _, list := range []*[]pushrules.Rule{&u.Override, &u.Underride} {
		for _, r := range slices.Clone(*list) {
			if !r.Enabled || !namesRoom(r, oldRoomID) {
				continue
			}
			r.RuleID = newRoomID
			r.Actions = slices.Clone(r.Actions)
			r.Conditions = slices.Clone(r.Conditions)
			for i := range r.Conditions {
				if r.Conditions[i].Key == "room_id" && r.Conditions[i].Pattern == oldRoomID {
					r.Conditions[i].Pattern = newRoomID
				}
			}
			add(list, r)
		}
	}
	return copied
}

// namesRoom reports whether a rule has a condition on the room's ID.
func namesRoom(r pushrules.Rule, roomID string) bool {
	return slices.ContainsFunc(r.Conditions, func(c pushrules.Condition) bool {
		return c.Key == "room_id" && c.Pattern == roomID
	})
}

// copyTags adds the user's tags of the old room to the new room's.
func copyTags(ctx context.Context, tx *storage.Tx, userID, oldRoomID, newRoomID string) error {
	oldTags, err := roomTags(ctx, tx, userID, oldRoomID)
	if err != nil || len(oldTags) == 0 {
		return err
	}
	newTags, err := roomTags(ctx, tx, userID, newRoomID)
	if err != nil {
		return err
	}
	for tag, v := range oldTags {
		newTags[tag] = v
	}
	raw, err := json.Marshal(map[string]any{"tags": newTags})
	if err != nil {
		return err
	}
	_, err = tx.PutAccountData(ctx, userID, newRoomID, "m.tag", raw)
	return err
}

func roomTags(ctx context.Context, tx *storage.Tx, userID, roomID string) (map[string]json.RawMessage, error) {
	raw, err := tx.AccountData(ctx, userID, roomID, "m.tag")
	if errors.Is(err, storage.ErrNotFound) {
		return map[string]json.RawMessage{}, nil
	}
	if err != nil {
		return nil, err
	}
	var c struct {
		Tags map[string]json.RawMessage `json:"tags"`
	}
	json.Unmarshal(raw, &c)
	if c.Tags == nil {
		c.Tags = map[string]json.RawMessage{}
	}
	return c.Tags, nil
}

// copyDirect adds the new room beside the old one in the user's m.direct.
func copyDirect(ctx context.Context, tx *storage.Tx, userID, oldRoomID, newRoomID string) error {
	raw, err := tx.AccountData(ctx, userID, "", "m.direct")
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var direct map[string]json.RawMessage
	if json.Unmarshal(raw, &direct) != nil {
		return nil // not ours to repair
	}
	for who, list := range direct {
		var rooms []string
		if json.Unmarshal(list, &rooms) != nil || !slices.Contains(rooms, oldRoomID) || slices.Contains(rooms, newRoomID) {
			continue
		}
		direct[who], _ = json.Marshal(append(rooms, newRoomID))
		out, err := json.Marshal(direct)
		if err != nil {
			return err
		}
		_, err = tx.PutAccountData(ctx, userID, "", "m.direct", out)
		return err
	}
	return nil
}
