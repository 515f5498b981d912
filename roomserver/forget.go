package roomserver

// errPurging refuses events for a room while a purge deletes it.
var errPurging = &ForbiddenError{Reason: "the room is being purged"}

// BeginPurge marks a room as being purged: until the returned function
// runs, the roomserver takes no events for it (M_FORBIDDEN). Its
// in-memory head is dropped now and again at the end, so the next use of
// the room ID loads it afresh (finding no room, or the room as rejoined).
func (rs *Roomserver) BeginPurge(roomID string) (end func()) {
	rs.purging.Store(roomID, true)
	rs.forgetRoom(roomID)
	return func() {
		rs.forgetRoom(roomID)
		rs.purging.Delete(roomID)
	}
}

// forgetRoom drops a room's head (a holder of it sees it broken and
// reloads) and its cached events, which storage no longer has.
func (rs *Roomserver) forgetRoom(roomID string) {
	rs.events.RemoveIf(func(_ string, c cachedEvent) bool { return c.pdu.RoomID().String() == roomID })
	if r, ok := rs.rooms.Get(roomID); ok {
		r.mu.Lock()
		r.broken.Store(true)
		r.mu.Unlock()
	}
	rs.rooms.Remove(roomID, nil)
}
