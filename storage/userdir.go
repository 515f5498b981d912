package storage

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
)

// DirectoryUser is a user directory entry.
type DirectoryUser struct {
	UserID      string
	DisplayName string
	AvatarURL   string
}

// userDirectoryCandidates lists the users the searcher may find in the
// user directory: the joined members of the rooms the searcher is joined to
// and of public rooms: those anyone may join (join rule public) or read
// (history visibility world_readable, whose members anyone can list).
// Their profile is the account's for local users (deactivated accounts are
// left out), and the member event's for others. A user in several rooms
// comes once per room. The searcher finds themself only through a public
// room, as on Synapse (sharing a private room is between two users).
// joinInOrder keeps SQLite going room by room (each step a primary-key
// lookup), whatever its estimates.
var userDirectoryCandidates = `WITH visible_rooms AS (
	SELECT room_nid, 0 AS public FROM current_state WHERE type = 'm.room.member' AND state_key = $1 AND membership = 'join'
	UNION
	SELECT r.room_nid, 1 FROM rooms r
		` + joinInOrder + ` current_state c ON c.room_nid = r.room_nid AND c.type = 'm.room.join_rules' AND c.state_key = ''
		` + joinInOrder + ` events je ON je.event_nid = c.event_nid
	WHERE je.state_value = 'public'
	UNION
	SELECT r.room_nid, 1 FROM rooms r
		` + joinInOrder + ` current_state c ON c.room_nid = r.room_nid AND c.type = 'm.room.history_visibility' AND c.state_key = ''
		` + joinInOrder + ` events he ON he.event_nid = c.event_nid
	WHERE he.state_value = 'world_readable'
)
SELECT m.state_key, a.user_id IS NOT NULL, COALESCE(a.displayname, ''), COALESCE(a.avatar_url, ''),
	` + jsonText("e.json", "content", "displayname") + `,
	` + jsonText("e.json", "content", "avatar_url") + `
FROM visible_rooms v
	` + joinInOrder + ` current_state m ON m.room_nid = v.room_nid AND m.type = 'm.room.member' AND m.membership = 'join'
	` + joinInOrder + ` events e ON e.event_nid = m.event_nid
	LEFT JOIN accounts a ON a.user_id = m.state_key
WHERE COALESCE(a.deactivated, 0) = 0 AND (v.public = 1 OR m.state_key != $1)`

// SearchUserDirectory serves POST /user_directory/search: the users the
// searcher shares a room with or who are in a public room, whose user ID or
// display name matches term (case-insensitively: every word of the term
// begins a word of the display name or the user ID's localpart, or the term
// begins the user ID), best matches first, at most limit of them. limited
// reports that more matched.
func (db *DB) SearchUserDirectory(ctx context.Context, searcher, term string, limit int) (users []DirectoryUser, limited bool, err error) {
	q := newUserQuery(term)
	if q.raw == "" || limit <= 0 {
		return nil, false, nil
	}
	rows, err := db.q().QueryContext(ctx, userDirectoryCandidates, searcher)
	if err != nil {
		return nil, false, fmt.Errorf("listing user directory candidates: %w", err)
	}
	defer rows.Close()
	type ranked struct {
		DirectoryUser
		tier int
	}
	seen := map[string]bool{}
	var found []ranked
	for rows.Next() {
		var u DirectoryUser
		var local bool
		var accName, accAvatar string
		var memberName, memberAvatar sql.NullString
		if err := rows.Scan(&u.UserID, &local, &accName, &accAvatar, &memberName, &memberAvatar); err != nil {
			return nil, false, fmt.Errorf("reading user directory candidate: %w", err)
		}
		if seen[u.UserID] {
			continue
		}
		seen[u.UserID] = true
		if local {
			u.DisplayName, u.AvatarURL = accName, accAvatar
		} else {
			u.DisplayName, u.AvatarURL = memberName.String, memberAvatar.String
		}
		if tier, ok := q.match(u); ok {
			found = append(found, ranked{u, tier})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("listing user directory candidates: %w", err)
	}
	// Best match first, then those with a profile (spec: "ordered by rank
	// and then whether or not profile info is available").
	sort.Slice(found, func(i, j int) bool {
		a, b := found[i], found[j]
		if a.tier != b.tier {
			return a.tier < b.tier
		}
		if (a.DisplayName != "") != (b.DisplayName != "") {
			return a.DisplayName != ""
		}
		if (a.AvatarURL != "") != (b.AvatarURL != "") {
			return a.AvatarURL != ""
		}
		if ka, kb := strings.ToLower(a.DisplayName), strings.ToLower(b.DisplayName); ka != kb {
			return ka < kb
		}
		return a.UserID < b.UserID
	})
	if len(found) > limit {
		found, limited = found[:limit], true
	}
	for _, f := range found {
		users = append(users, f.DirectoryUser)
	}
	return users, limited, nil
}

// userQuery is a user directory search term, lower-cased.
type userQuery struct {
	raw   string   // the whole term, trimmed, without a leading '@'
	words []string // its words
}

func newUserQuery(term string) userQuery {
	raw := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(term)), "@")
	return userQuery{raw: raw, words: searchWords(raw)}
}

// match reports whether u matches and how well: 0 an exact display name,
// localpart or user ID; 1 one of them begins with the term; 2 every word of
// the term begins a word of the display name or localpart.
func (q userQuery) match(u DirectoryUser) (tier int, ok bool) {
	id := strings.ToLower(strings.TrimPrefix(u.UserID, "@"))
	local, _, _ := strings.Cut(id, ":")
	name := strings.ToLower(strings.TrimSpace(u.DisplayName))
	switch {
	case q.raw == id || q.raw == local || (name != "" && q.raw == name):
		return 0, true
	case strings.HasPrefix(id, q.raw) || (name != "" && strings.HasPrefix(name, q.raw)):
		return 1, true
	}
	if len(q.words) == 0 {
		return 0, false
	}
	tokens := append(searchWords(local), searchWords(name)...)
	for _, w := range q.words {
		found := false
		for _, t := range tokens {
			if strings.HasPrefix(t, w) {
				found = true
				break
			}
		}
		if !found {
			return 0, false
		}
	}
	return 2, true
}
