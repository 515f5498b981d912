package roomserver

import (
	"context"
	"errors"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// Redactions. From room version 3 the auth rules accept every redaction
// event; whether it may strip its target is the server's decision when it
// applies it (spec "Redactions"): the redaction's sender must be of the
// same server as the target's sender, or hold the redact power level. A
// redaction that may not apply is kept as an event but changes nothing; one
// whose target is not here yet applies when the target arrives.

// checkLocalRedaction enforces who may redact what for a local sender
// (r.mu held): their own events, or others' with the redact power.
func (rs *Roomserver) checkLocalRedaction(ctx context.Context, r *room, ev *LocalEvent) error {
	if ev.Type != spec.MRoomRedaction {
		return nil
	}
	if ev.Redacts == "" {
		return badRequest("redaction without a target")
	}
	target, err := rs.db.EventByID(ctx, ev.Redacts)
	if errors.Is(err, storage.ErrNotFound) {
		return nil // unknown target: the redaction is stored and applies if the event arrives
	}
	if err != nil {
		return err
	}
	if target.RoomID != r.id {
		return badRequest("event %s is not in this room", ev.Redacts)
	}
	if target.Sender == ev.Sender {
		return nil
	}
	pl, err := rs.powerLevels(ctx, r)
	if err != nil {
		return err
	}
	if pl.UserLevel(spec.SenderID(ev.Sender)) < pl.Redact && !r.isCreator(ev.Sender) {
		return forbidden("you may only redact your own events")
	}
	return nil
}

// redactionAllowed is the server's rule for applying a redaction: same
// server as the target's sender, or the redact power level in the state
// before the redaction (creators of v12 rooms always may).
func redactionAllowed(ver gomatrixserverlib.IRoomVersion, redaction gomatrixserverlib.PDU, targetSender string, before stateMap) bool {
	if domainOf(string(redaction.SenderID())) == domainOf(targetSender) && domainOf(targetSender) != "" {
		return true
	}
	sender := string(redaction.SenderID())
	if create := before[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomCreate}]; create != nil {
		for _, c := range creatorsOf(ver, create) {
			if c == sender {
				return true
			}
		}
	}
	pl := gomatrixserverlib.PowerLevelContent{}
	if ev := before[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomPowerLevels}]; ev != nil {
		parsed, err := gomatrixserverlib.NewPowerLevelContentFromEvent(ev)
		if err != nil {
			return false
		}
		pl = parsed
	} else {
		pl.Defaults()
		if create := before[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomCreate}]; create != nil {
			pl.Users = map[string]int64{string(create.SenderID()): 100}
		}
	}
	return pl.UserLevel(redaction.SenderID()) >= pl.Redact
}

func domainOf(userID string) string {
	uid, err := spec.NewUserID(userID, true)
	if err != nil {
		return ""
	}
	return string(uid.Domain())
}

// redactInHead prepares a redaction's effect (r.mu held): the target, when
// it is room state, is seen redacted by the auth rules from now on, and the
// write strips it once stored. Local redactions passed checkLocalRedaction.
func (rs *Roomserver) redactInHead(ctx context.Context, r *room, pdu gomatrixserverlib.PDU, w *eventWrite) error {
	if pdu.Type() != spec.MRoomRedaction || pdu.Redacts() == "" {
		return nil
	}
	w.redacts = pdu.Redacts()
	return rs.redactStateInHead(ctx, r, pdu.Redacts())
}

// redactStateInHead makes the head's view of a current state event the
// redacted one until the stripped event is stored.
func (rs *Roomserver) redactStateInHead(ctx context.Context, r *room, targetID string) error {
	for _, ref := range r.state {
		if ref.id != targetID {
			continue
		}
		st, err := rs.loadEvent(ctx, r, targetID)
		if err != nil {
			return err
		}
		red, err := redactPDU(r.version, st)
		if err != nil {
			return err
		}
		r.pin(red)
		return nil
	}
	return nil
}

// remoteRedaction decides (r.mu held) whether a redaction from elsewhere
// may strip its target, when the target is stored already.
func (rs *Roomserver) remoteRedaction(ctx context.Context, r *room, pdu gomatrixserverlib.PDU, before stateMap, w *eventWrite) error {
	if pdu.Type() != spec.MRoomRedaction || pdu.Redacts() == "" {
		return nil
	}
	target, err := rs.db.EventByID(ctx, pdu.Redacts())
	if errors.Is(err, storage.ErrNotFound) {
		if p := r.pinnedEvent(pdu.Redacts()); p != nil {
			if redactionAllowed(r.version, pdu, string(p.SenderID()), before) {
				return rs.redactInHead(ctx, r, pdu, w)
			}
		}
		return nil // applies when the target arrives (pendingRedactionsFor)
	}
	if err != nil {
		return err
	}
	if target.RoomID != r.id || !redactionAllowed(r.version, pdu, target.Sender, before) {
		return nil
	}
	return rs.redactInHead(ctx, r, pdu, w)
}

// pendingRedactionsFor lists the stored redactions of an arriving event
// that may apply to it (r.mu held), each judged by the state before it.
func (rs *Roomserver) pendingRedactionsFor(ctx context.Context, r *room, pdu gomatrixserverlib.PDU) ([]gomatrixserverlib.PDU, error) {
	stored, err := rs.db.RedactionsOf(ctx, pdu.EventID())
	if err != nil || len(stored) == 0 {
		return nil, err
	}
	var out []gomatrixserverlib.PDU
	for i := range stored {
		e := &stored[i]
		if e.RoomID != r.id || e.Status != storage.EventAccepted {
			continue
		}
		red, err := parseStored(r.version, e)
		if err != nil {
			return nil, err
		}
		before, err := rs.snapshotState(ctx, r, e.StateBefore)
		if err != nil {
			return nil, err
		}
		if redactionAllowed(r.version, red, string(pdu.SenderID()), before) {
			out = append(out, red)
		}
	}
	return out, nil
}
