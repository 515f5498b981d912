// Package roomdir is the room directory and space summaries as both the
// client API and federation serve them: the public room list (its query
// parameters, filter, order and pagination tokens) and what a room's
// preview shows (the hierarchy's and the room summary's room chunk, a
// space's children).
package roomdir

import (
	"context"
	"encoding/base64"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// MaxPublicRooms bounds one page of /publicRooms (also when no limit is
// given).
const MaxPublicRooms = 1000

// Query is one request of the public room list.
type Query struct {
	Limit     int
	Since     string
	Search    string
	RoomTypes []*string // nil entry: rooms without a type
	// NoNetworks: a third-party network was asked for: none exist here.
	NoNetworks bool
}

// Response is a page of the public room list, as both APIs serve it.
type Response struct {
	Chunk     []Chunk `json:"chunk"`
	NextBatch string  `json:"next_batch,omitempty"`
	PrevBatch string  `json:"prev_batch,omitempty"`
	Total     int     `json:"total_room_count_estimate"`
}

// Chunk is one room of the public room list.
type Chunk struct {
	RoomID         string `json:"room_id"`
	NumJoined      int    `json:"num_joined_members"`
	WorldReadable  bool   `json:"world_readable"`
	GuestCanJoin   bool   `json:"guest_can_join"`
	Name           string `json:"name,omitempty"`
	Topic          string `json:"topic,omitempty"`
	AvatarURL      string `json:"avatar_url,omitempty"`
	CanonicalAlias string `json:"canonical_alias,omitempty"`
	JoinRule       string `json:"join_rule,omitempty"`
	RoomType       string `json:"room_type,omitempty"`
}

// ParseGet reads the query parameters of GET /publicRooms (client and
// federation: limit, since, include_all_networks, third_party_instance_id).
func ParseGet(q url.Values) (Query, error) {
	pq := Query{Since: q.Get("since")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return Query{}, httputil.InvalidParam("limit must be a non-negative integer")
		}
		pq.Limit = n
	}
	if q.Get("third_party_instance_id") != "" && q.Get("include_all_networks") != "true" {
		pq.NoNetworks = true
	}
	return pq, nil
}

// Body is the body of POST /publicRooms (client and federation).
type Body struct {
	Limit                *int    `json:"limit"`
	Since                string  `json:"since"`
	Filter               *Filter `json:"filter"`
	IncludeAllNetworks   bool    `json:"include_all_networks"`
	ThirdPartyInstanceID string  `json:"third_party_instance_id"`
}

// Filter is the filter of POST /publicRooms.
type Filter struct {
	GenericSearchTerm string    `json:"generic_search_term"`
	RoomTypes         []*string `json:"room_types"`
}

// Query checks the body and turns it into a query.
func (b *Body) Query() (Query, error) {
	if b.IncludeAllNetworks && b.ThirdPartyInstanceID != "" {
		return Query{}, httputil.InvalidParam("include_all_networks and third_party_instance_id cannot be combined")
	}
	pq := Query{Since: b.Since, NoNetworks: b.ThirdPartyInstanceID != ""}
	if b.Limit != nil {
		if *b.Limit < 0 {
			return Query{}, httputil.InvalidParam("limit must be a non-negative integer")
		}
		pq.Limit = *b.Limit
	}
	if b.Filter != nil {
		pq.Search = strings.TrimSpace(b.Filter.GenericSearchTerm)
		pq.RoomTypes = b.Filter.RoomTypes
	}
	return pq, nil
}

// listedInDirectory is Synapse's rule for which published rooms are shown:
// rooms someone can join or read, with at least one member.
func listedInDirectory(d *storage.DirectoryRoom) bool {
	if d.JoinedMembers == 0 {
		return false
	}
	switch d.JoinRule {
	case "public", "knock", "knock_restricted":
		return true
	}
	return d.HistoryVisibility == "world_readable"
}

func (q *Query) matches(d *storage.DirectoryRoom) bool {
	if len(q.RoomTypes) > 0 {
		ok := false
		for _, t := range q.RoomTypes {
			if (t == nil && d.RoomType == "") || (t != nil && *t == d.RoomType) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return q.Search == "" || MatchesSearch(q.Search, d.Name, d.Topic, d.CanonicalAlias)
}

// MatchesSearch reports whether a generic search term is in any of the
// fields (a room's name, topic, canonical alias), case-insensitively.
func MatchesSearch(term string, fields ...string) bool {
	term = strings.ToLower(strings.TrimSpace(term))
	for _, f := range fields {
		if strings.Contains(strings.ToLower(f), term) {
			return true
		}
	}
	return false
}

// roomListKey is a room's position in the directory order: most joined
// members first, then by room ID. Pagination tokens carry one.
type roomListKey struct {
	joined int
	roomID string
}

func (k roomListKey) before(o roomListKey) bool {
	return k.joined > o.joined || (k.joined == o.joined && k.roomID < o.roomID)
}

// Tokens are "n" (the rooms from the key on) or "p" (the rooms before it)
// followed by the key, base64url-encoded so they are opaque and URL-safe.
// Keys rather than offsets keep pages stable when rooms come and go.
func makeRoomListToken(dir byte, k roomListKey) string {
	return base64.RawURLEncoding.EncodeToString([]byte(string(dir) + strconv.Itoa(k.joined) + "|" + k.roomID))
}

func parseRoomListToken(tok string) (dir byte, k roomListKey, err error) {
	raw, decErr := base64.RawURLEncoding.DecodeString(tok)
	s := string(raw)
	if decErr == nil && len(s) > 1 && (s[0] == 'n' || s[0] == 'p') {
		if n, id, ok := strings.Cut(s[1:], "|"); ok {
			if joined, convErr := strconv.Atoi(n); convErr == nil {
				return s[0], roomListKey{joined, id}, nil
			}
		}
	}
	return 0, k, httputil.InvalidParam("invalid pagination token %q", tok)
}

// PublicRooms lists a page of this server's public room directory.
func PublicRooms(ctx context.Context, db *storage.DB, q Query) (*Response, error) {
	var dir byte
	var from roomListKey
	if q.Since != "" {
		var err error
		if dir, from, err = parseRoomListToken(q.Since); err != nil {
			return nil, err
		}
	}
	all, err := db.PublishedRooms(ctx)
	if err != nil {
		return nil, err
	}
	resp := &Response{Chunk: []Chunk{}}
	var rooms []storage.DirectoryRoom
	for i := range all {
		if !listedInDirectory(&all[i]) {
			continue
		}
		resp.Total++
		if !q.NoNetworks && q.matches(&all[i]) {
			rooms = append(rooms, all[i])
		}
	}
	key := func(i int) roomListKey { return roomListKey{rooms[i].JoinedMembers, rooms[i].RoomID} }
	// Storage returns them in directory order already; sorting again keeps
	// this function correct on its own.
	sort.SliceStable(rooms, func(i, j int) bool { return key(i).before(key(j)) })
	limit := q.Limit
	if limit <= 0 || limit > MaxPublicRooms {
		limit = MaxPublicRooms
	}
	start := 0
	if dir != 0 {
		// The first room at or after the token's key.
		start = sort.Search(len(rooms), func(i int) bool { return !key(i).before(from) })
	}
	end := min(start+limit, len(rooms))
	if dir == 'p' {
		start, end = max(0, start-limit), start
	}
	for _, d := range rooms[start:end] {
		if d.JoinRule == "" {
			d.JoinRule = "invite" // the auth rules' default; an absent join_rule would read as public
		}
		resp.Chunk = append(resp.Chunk, Chunk{
			RoomID: d.RoomID, NumJoined: d.JoinedMembers, WorldReadable: d.HistoryVisibility == "world_readable",
			GuestCanJoin: d.GuestAccess == "can_join", Name: d.Name, Topic: d.Topic, AvatarURL: d.AvatarURL,
			CanonicalAlias: d.CanonicalAlias, JoinRule: d.JoinRule, RoomType: d.RoomType,
		})
	}
	if end < len(rooms) {
		resp.NextBatch = makeRoomListToken('n', key(end))
	}
	if start > 0 {
		if start < len(rooms) {
			resp.PrevBatch = makeRoomListToken('p', key(start))
		} else {
			resp.PrevBatch = makeRoomListToken('p', from) // past the end: the rooms before the token
		}
	}
	return resp, nil
}
