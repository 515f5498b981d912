package clientapi

// The hierarchy walk across servers: rooms this server is in are read from
// its state; the others are asked of a server that is in them (the via
// servers of the m.space.child event that led there), as Synapse does.

import (
	"context"
	"errors"

	"matrixhs/internal/roomdir"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// hierarchyMaxRemote bounds the other servers' hierarchies one request
// asks for (pagination re-walks the tree, asking again).
const hierarchyMaxRemote = 50

// hierarchyNode is one room of a walk, read here or from another server's
// answer.
type hierarchyNode struct {
	preview  roomdir.Preview
	children []roomdir.Child
	// sent are the previews of children the answering server sent along;
	// inaccessible are those it said this server may not see (another
	// server's rooms only).
	sent         map[string]*roomdir.Preview
	inaccessible map[string]bool
}

// walkItem is a room the walk is to visit: how deep, the servers to ask
// about it, and its preview when the server answering for its parent sent
// one along.
type walkItem struct {
	roomID string
	depth  int
	via    []string
	sent   *roomdir.Preview
}

// next are the node's children still to visit, in reverse order (a stack:
// the first child is visited first).
func (n *hierarchyNode) next(depth int, seen map[string]bool) []walkItem {
	var out []walkItem
	for i := len(n.children) - 1; i >= 0; i-- {
		c := n.children[i]
		if seen[c.RoomID] || n.inaccessible[c.RoomID] {
			continue
		}
		out = append(out, walkItem{roomID: c.RoomID, depth: depth, via: c.Via, sent: n.sent[c.RoomID]})
	}
	return out
}

// hierarchyWalk is one request's walk.
type hierarchyWalk struct {
	a             *API
	userID        string
	suggestedOnly bool
	maxDepth      int
	remoteLeft    int
}

// node reads a room of the walk: here when this server is in it (or cannot
// ask anyone), else from a server that is; nil when the user may not see it
// or no one could tell.
func (w *hierarchyWalk) node(ctx context.Context, it walkItem) (*hierarchyNode, error) {
	p, err := w.a.db.RoomPreview(ctx, it.roomID)
	if errors.Is(err, storage.ErrNotFound) {
		p = nil
	} else if err != nil {
		return nil, err
	}
	remote := w.a.directory != nil && (len(it.via) > 0 || it.sent != nil)
	if p != nil {
		joined, err := w.a.localJoined(ctx, it.roomID)
		if err != nil {
			return nil, err
		}
		if joined || !remote {
			return w.localNode(ctx, p)
		}
	}
	if remote {
		if n, err := w.remoteNode(ctx, it); n != nil || err != nil {
			return n, err
		}
	}
	if p != nil {
		// What this server last knew of a room it has left.
		return w.localNode(ctx, p)
	}
	return nil, nil
}

// localNode is a room this server holds, if the user may preview it.
func (w *hierarchyWalk) localNode(ctx context.Context, p *storage.RoomPreview) (*hierarchyNode, error) {
	if _, ok, err := w.a.mayPreview(ctx, p, w.userID); err != nil || !ok {
		return nil, err
	}
	n := &hierarchyNode{preview: roomdir.NewPreview(p)}
	// Only spaces have children: m.space.child events in other rooms are
	// not followed (and not listed), as in Synapse.
	if p.RoomType == roomdir.SpaceRoomType {
		var err error
		if n.children, err = roomdir.Children(ctx, w.a.db, p.NID, w.suggestedOnly); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// remoteNode is a room read from another server, if the user may preview
// it: the preview its parent's server sent along when that is enough (not
// a space, or as deep as the walk goes), else the hierarchy of a via
// server.
func (w *hierarchyWalk) remoteNode(ctx context.Context, it walkItem) (*hierarchyNode, error) {
	if it.sent != nil && (it.sent.RoomType != roomdir.SpaceRoomType || it.depth >= w.maxDepth) {
		return w.visible(ctx, &hierarchyNode{preview: *it.sent})
	}
	if w.remoteLeft <= 0 || len(it.via) == 0 {
		return nil, nil
	}
	w.remoteLeft--
	resp, err := w.a.directory.Hierarchy(ctx, it.roomID, it.via, w.suggestedOnly)
	if errors.Is(err, roomserver.ErrRoomNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return w.visible(ctx, remoteHierarchyNode(resp, w.suggestedOnly))
}

// remoteHierarchyNode is the node another server's hierarchy answer
// describes.
func remoteHierarchyNode(resp *roomdir.FederationHierarchy, suggestedOnly bool) *hierarchyNode {
	n := &hierarchyNode{preview: resp.Room.Preview, sent: map[string]*roomdir.Preview{}, inaccessible: map[string]bool{}}
	if n.preview.RoomType == roomdir.SpaceRoomType {
		n.children = resp.Room.Children(suggestedOnly)
	}
	for i := range resp.Children {
		c := &resp.Children[i]
		if c.RoomID != "" {
			n.sent[c.RoomID] = c
		}
	}
	for _, id := range resp.InaccessibleChildren {
		n.inaccessible[id] = true
	}
	return n
}

// visible is n when the user may preview the room another server
// described, nil otherwise.
func (w *hierarchyWalk) visible(ctx context.Context, n *hierarchyNode) (*hierarchyNode, error) {
	_, ok, err := w.a.mayPreviewRemote(ctx, &n.preview, w.userID)
	if err != nil || !ok {
		return nil, err
	}
	return n, nil
}

// mayPreviewRemote is mayPreviewRoom for a room another server described:
// the user's membership is what this server knows of it.
func (a *API) mayPreviewRemote(ctx context.Context, pv *roomdir.Preview, userID string) (string, bool, error) {
	if pv.JoinRule == "" {
		pv.JoinRule = "invite"
	}
	var nid int64
	info, err := a.db.Room(ctx, pv.RoomID)
	switch {
	case err == nil:
		nid = info.NID
	case !errors.Is(err, storage.ErrNotFound):
		return "", false, err
	}
	return a.mayPreviewRoom(ctx, pv, nid, userID)
}

// localJoined reports whether a user of this server is joined to the room.
func (a *API) localJoined(ctx context.Context, roomID string) (bool, error) {
	fr, err := a.rooms.FederationRoom(ctx, roomID)
	if errors.Is(err, roomserver.ErrRoomNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return fr.LocalJoined, nil
}
