package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver/pushrules"
	"matrixhs/storage"
)

// rulesCache keeps each user's effective push rules; the client API
// invalidates an entry when the user changes a rule.
type rulesCache struct {
	mu    sync.Mutex
	rules map[string]userPushState
	// gen counts invalidations, so a load that raced with one is not kept.
	gen uint64
}

// userPushState is what evaluating events for a recipient needs.
type userPushState struct {
	rules   pushrules.Ruleset
	ignored map[string]bool // senders the user ignores (m.ignored_user_list)
}

// InvalidatePushRules forgets a user's cached push rules and ignore list;
// call it when either changes.
func (rs *Roomserver) InvalidatePushRules(userID string) {
	rs.pushRules.mu.Lock()
	delete(rs.pushRules.rules, userID)
	rs.pushRules.gen++
	rs.pushRules.mu.Unlock()
}

// IgnoredUsers is the set of users userID ignores (m.ignored_user_list),
// from the same cache as the push rules. The map is shared: read only.
func (rs *Roomserver) IgnoredUsers(ctx context.Context, userID string) (map[string]bool, error) {
	st, err := rs.userRules(ctx, userID)
	return st.ignored, err
}

func (rs *Roomserver) userRules(ctx context.Context, userID string) (userPushState, error) {
	rs.pushRules.mu.Lock()
	st, ok := rs.pushRules.rules[userID]
	gen := rs.pushRules.gen
	rs.pushRules.mu.Unlock()
	if ok {
		return st, nil
	}
	raw, err := rs.db.PushRules(ctx, userID)
	if err != nil {
		return st, err
	}
	var u pushrules.UserRules
	if raw != nil {
		if err := json.Unmarshal(raw, &u); err != nil {
			return st, err
		}
	}
	local, _, _ := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	st.rules = pushrules.Effective(u, userID, local)
	st.ignored = map[string]bool{}
	ig, err := rs.db.AccountData(ctx, userID, "", "m.ignored_user_list")
	switch {
	case err == nil:
		var c struct {
			IgnoredUsers map[string]json.RawMessage `json:"ignored_users"`
		}
		json.Unmarshal(ig, &c)
		for u := range c.IgnoredUsers {
			if u != userID {
				st.ignored[u] = true
			}
		}
	case !errors.Is(err, storage.ErrNotFound):
		return st, err
	}
	rs.pushRules.mu.Lock()
	if rs.pushRules.rules == nil {
		rs.pushRules.rules = map[string]userPushState{}
	}
	if rs.pushRules.gen == gen {
		rs.pushRules.rules[userID] = st
	}
	rs.pushRules.mu.Unlock()
	return st, nil
}

// pushActions evaluates every local recipient's push rules for pdu against
// the room state after it (r.mu held, head already moved past pdu). Only
// notifying outcomes are kept.
func (rs *Roomserver) pushActions(ctx context.Context, r *room, pdu gomatrixserverlib.PDU) ([]storage.PushAction, error) {
	ev, err := pushrules.NewEvent(pdu.JSON())
	if err != nil {
		return nil, nil
	}
	sender := string(pdu.SenderID())
	recipients := make([]string, 0, len(r.local)+1)
	for u := range r.local {
		if u != sender {
			recipients = append(recipients, u)
		}
	}
	// An invite notifies the local invitee.
	if pdu.Type() == spec.MRoomMember && pdu.StateKey() != nil && *pdu.StateKey() != sender && rs.isLocal(*pdu.StateKey()) {
		if m, _ := pdu.Membership(); m == spec.Invite {
			recipients = append(recipients, *pdu.StateKey())
		}
	}
	if len(recipients) == 0 {
		return nil, nil
	}
	pl, err := rs.powerLevels(ctx, r)
	if err != nil {
		return nil, nil // malformed power levels: nobody is notified
	}
	senderPL := pl.UserLevel(pdu.SenderID())
	if r.isCreator(sender) {
		senderPL = 1 << 53
	}
	notifLevels := map[string]int64{"room": pl.NotificationLevel("room")}
	thread := "main"
	if target, relType := relation(pdu.Content()); relType == "m.thread" && target != "" {
		thread = target
	}
	// Replies in threads meet the MSC4306 postcontent rules: read the
	// thread's subscribers once for all recipients.
	var subscribers map[string]bool
	if thread != "main" {
		if subscribers, err = rs.db.ThreadSubscribers(ctx, r.id, thread); err != nil {
			subscribers = nil // evaluate as unsubscribed rather than drop every notification
		}
	}
	var out []storage.PushAction
	for _, u := range recipients {
		st, err := rs.userRules(ctx, u)
		if err != nil || st.ignored[sender] {
			continue // nothing from ignored users notifies
		}
		res := pushrules.Evaluate(st.rules, ev, pushrules.EvalContext{
			UserID: u, DisplayName: r.local[u], MemberCount: r.joined,
			SenderPowerLevel: senderPL, NotificationPowerLevels: notifLevels,
			InThread: thread != "main", ThreadSubscribed: subscribers[u],
		})
		if !res.Notify {
			continue
		}
		actions, _ := json.Marshal(res.Actions)
		out = append(out, storage.PushAction{UserID: u, Highlight: res.Highlight, ThreadID: thread, Actions: actions})
	}
	return out, nil
}
