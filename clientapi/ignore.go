package clientapi

// Ignoring users (spec "Ignoring Users"): the user's global account data
// m.ignored_user_list names users whose events and invites the server
// keeps from them. State events of ignored users are still sent, so the
// room looks the same to everyone. The list is cached by the roomserver
// (which also needs it for push rules) and checked per event with a map
// lookup.

import (
	"context"
	"encoding/json"

	"matrixhs/storage"
)

// ignores reports whether the reader ignores e: a non-state event sent by
// an ignored user.
func (acc *roomAccess) ignores(e *storage.Event) bool {
	return acc.ignored != nil && e.StateKey == nil && acc.ignored[e.Sender]
}

// withIgnored loads the reader's ignore list into acc (for /messages and
// /context, whose pages then leave those events out).
func (a *API) withIgnored(ctx context.Context, acc *roomAccess, userID string) {
	acc.ignored = a.ignoredUsers(ctx, userID)
}

// loadSyncIgnored reads the ignore list for one sync pass into p.
func (a *API) loadSyncIgnored(ctx context.Context, p *syncParams, userID string) {
	p.ignored = a.ignoredUsers(ctx, userID)
}

// inviteFromIgnored reports whether an invite membership was sent by a user
// the reader ignores (such invites are not sent to the client).
func (a *API) inviteFromIgnored(ctx context.Context, ignored map[string]bool, m storage.RoomMembership) (bool, error) {
	if len(ignored) == 0 {
		return false, nil
	}
	events, err := a.db.EventsByNID(ctx, []int64{m.EventNID})
	if err != nil || len(events) != 1 {
		return false, err
	}
	return ignored[events[0].Sender], nil
}

// dropIgnoredEphemeral removes ignored users from a room's m.typing and
// m.receipt events; a receipt event left empty is dropped.
func dropIgnoredEphemeral(events []json.RawMessage, ignored map[string]bool) []json.RawMessage {
	if len(ignored) == 0 {
		return events
	}
	out := events[:0:0]
	for _, raw := range events {
		var ev struct {
			Type    string          `json:"type"`
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal(raw, &ev) != nil {
			out = append(out, raw)
			continue
		}
		switch ev.Type {
		case "m.typing":
			var c struct {
				UserIDs []string `json:"user_ids"`
			}
			json.Unmarshal(ev.Content, &c)
			kept := []string{}
			for _, u := range c.UserIDs {
				if !ignored[u] {
					kept = append(kept, u)
				}
			}
			if len(kept) != len(c.UserIDs) {
				raw, _ = json.Marshal(map[string]any{"type": ev.Type, "content": map[string]any{"user_ids": kept}})
			}
		case "m.receipt":
			// {event ID: {receipt type: {user ID: receipt}}}
			var c map[string]map[string]map[string]json.RawMessage
			if json.Unmarshal(ev.Content, &c) != nil {
				break
			}
			changed := false
			for eventID, byType := range c {
				for typ, byUser := range byType {
					for u := range byUser {
						if ignored[u] {
							delete(byUser, u)
							changed = true
						}
					}
					if len(byUser) == 0 {
						delete(byType, typ)
					}
				}
				if len(byType) == 0 {
					delete(c, eventID)
				}
			}
			if !changed {
				break
			}
			if len(c) == 0 {
				continue
			}
			raw, _ = json.Marshal(map[string]any{"type": ev.Type, "content": c})
		}
		out = append(out, raw)
	}
	return out
}
