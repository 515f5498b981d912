package roomserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// Jump to date across servers (GET /timestamp_to_event): where this
// server's history may miss the event nearest a time (nothing found, or
// the event found follows a gap in the history), the other servers of the
// room are asked, and the event one names is backfilled so that /context
// and /messages can go on from it, as Synapse does.

// TimestampFetcher is a Backfiller that can also ask another server for
// its event nearest a timestamp (/timestamp_to_event): federation's.
type TimestampFetcher interface {
	TimestampToEvent(ctx context.Context, origin spec.ServerName, roomID string, ts int64, forwards bool) (eventID string, originTS int64, err error)
}

const (
	// timestampServers is how many servers one lookup asks.
	timestampServers = 2
	// timestampRequestTimeout bounds each server's part (the question and
	// the backfill of its answer).
	timestampRequestTimeout = 10 * time.Second
)

// GapBefore reports whether this server lacks some of an event's prev
// events: history may be missing just before it.
func (rs *Roomserver) GapBefore(ctx context.Context, e *storage.Event) (bool, error) {
	pdu, err := ParseEvent(e)
	if err != nil {
		return false, err
	}
	prevs := pdu.PrevEventIDs()
	if len(prevs) == 0 {
		return false, nil
	}
	held, err := rs.db.EventsByID(ctx, prevs)
	if err != nil {
		return false, err
	}
	return len(held) < len(prevs), nil
}

// RemoteEventNearTimestamp asks the room's other servers (at most
// timestampServers) for their event nearest ts in the direction, and
// returns the first answer once held here (backfilled if need be, and its
// timestamp checked against the answer). ErrEventNotFound when none gives
// one.
func (rs *Roomserver) RemoteEventNearTimestamp(ctx context.Context, roomID string, ts int64, forwards bool) (*storage.Event, error) {
	tf, ok := rs.backfiller.(TimestampFetcher)
	if !ok {
		return nil, ErrEventNotFound
	}
	fr, err := rs.FederationRoom(ctx, roomID)
	if errors.Is(err, ErrRoomNotFound) {
		return nil, ErrEventNotFound
	}
	if err != nil {
		return nil, err
	}
	servers, err := rs.db.JoinedServers(ctx, fr.NID)
	if err != nil {
		return nil, err
	}
	tried := 0
	for _, s := range servers {
		server := spec.ServerName(s)
		if server == rs.origin {
			continue
		}
		if tried == timestampServers || ctx.Err() != nil {
			break
		}
		tried++
		sctx, cancel := context.WithTimeout(ctx, timestampRequestTimeout)
		e, err := rs.remoteTimestampEvent(sctx, tf, fr, server, ts, forwards)
		cancel()
		if err == nil {
			return e, nil
		}
		// The fetcher logs what the server answered; the next one is asked.
	}
	return nil, ErrEventNotFound
}

// remoteTimestampEvent asks one server and backfills its answer.
func (rs *Roomserver) remoteTimestampEvent(ctx context.Context, tf TimestampFetcher, fr *FederationRoom, server spec.ServerName, ts int64, forwards bool) (*storage.Event, error) {
	eventID, originTS, err := tf.TimestampToEvent(ctx, server, fr.ID, ts, forwards)
	if err != nil {
		return nil, err
	}
	e, err := rs.roomEvent(ctx, fr, eventID)
	if errors.Is(err, ErrEventNotFound) {
		if _, err := rs.backfillFrom(ctx, fr, server, []string{eventID}, 1); err != nil {
			return nil, err
		}
		e, err = rs.roomEvent(ctx, fr, eventID)
	}
	if err != nil {
		return nil, err
	}
	if e.StreamPos == 0 || e.OriginTS != originTS {
		// Not in the timeline (an outlier), or not the event described.
		return nil, fmt.Errorf("%s named %s (at %d), which could not be placed in the room's history", server, eventID, originTS)
	}
	return e, nil
}
