package roomserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// Step 4: the event must pass the auth rules against its own auth events.
// Auth events the room does not hold are reported missing; an auth event
// that was rejected makes this event rejected too (fetching it again would
// not help).

// checkAuthEvents returns why the event is rejected (nil: allowed) or a
// MissingAuthEventsError.
func (rs *Roomserver) checkAuthEvents(ctx context.Context, r *room, pdu gomatrixserverlib.PDU, batch *inputBatch) (rejectedBy error, err error) {
	ids := pdu.AuthEventIDs()
	var missing []string
	var events []gomatrixserverlib.PDU
	for _, id := range dedupe(ids) {
		if st, ok := batch.status[id]; ok && st == StatusRejected {
			return fmt.Errorf("auth event %s was rejected", id), nil
		}
		ev, status, err := rs.eventOfRoom(ctx, r, id)
		if errors.Is(err, storage.ErrNotFound) {
			missing = append(missing, id)
			continue
		}
		if err != nil {
			return nil, err
		}
		if status == StatusRejected {
			return fmt.Errorf("auth event %s was rejected", id), nil
		}
		events = append(events, ev)
	}
	if len(missing) > 0 {
		return nil, &MissingAuthEventsError{EventID: pdu.EventID(), Missing: missing}
	}
	if len(ids) != len(events) {
		return errors.New("auth_events lists an event twice"), nil
	}
	// v12 rooms leave the create event out of auth_events; the rules need it.
	if r.version.DomainlessRoomIDs() && pdu.Type() != spec.MRoomCreate {
		create, _, err := rs.eventOfRoom(ctx, r, createEventID(r))
		if errors.Is(err, storage.ErrNotFound) {
			return nil, &MissingAuthEventsError{EventID: pdu.EventID(), Missing: []string{createEventID(r)}}
		}
		if err != nil {
			return nil, err
		}
		events = append(events, create)
	}
	provider, err := gomatrixserverlib.NewAuthEvents(events)
	if err != nil {
		return err, nil
	}
	if err := gomatrixserverlib.Allowed(pdu, provider, userIDForSender); err != nil {
		return err, nil
	}
	return nil, nil
}

// createEventID is a v12 room's create event ID, which its room ID encodes.
func createEventID(r *room) string { return "$" + r.id[1:] }

// eventOfRoom loads an event of the room whatever its status: queued in
// this batch, cached, or stored. Events of other rooms are not found.
func (rs *Roomserver) eventOfRoom(ctx context.Context, r *room, id string) (gomatrixserverlib.PDU, EventStatus, error) {
	if pdu := r.pinnedEvent(id); pdu != nil {
		return pdu, StatusAccepted, nil
	}
	if c, ok := rs.events.Get(id); ok {
		if c.pdu.RoomID().String() != r.id {
			return nil, 0, storage.ErrNotFound
		}
		return c.pdu, c.status, nil
	}
	e, err := rs.db.EventByID(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	if e.RoomID != r.id {
		return nil, 0, storage.ErrNotFound
	}
	pdu, err := parseStored(r.version, e)
	if err != nil {
		return nil, 0, err
	}
	rs.events.Add(id, cachedEvent{pdu: pdu, status: EventStatus(e.Status)})
	return pdu, EventStatus(e.Status), nil
}

func dedupe(ids []string) []string {
	seen := map[string]bool{}
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
