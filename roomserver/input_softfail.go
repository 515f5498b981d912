package roomserver

import (
	"context"

	"github.com/matrix-org/gomatrixserverlib"
)

// Step 6: an event that passed the checks at its place in the DAG must
// also pass them against the room's current state; if not it is
// "soft-failed": stored (other servers may build on it) but kept out of the
// timeline, clients' view and the forward extremities. Events that extend
// the current state exactly were checked against it already.

// softFailed returns why the current state refuses pdu (nil: it allows it).
func (rs *Roomserver) softFailed(ctx context.Context, r *room, pdu gomatrixserverlib.PDU) (error, error) {
	current, err := rs.currentStateFor(ctx, r, pdu)
	if err != nil {
		return nil, err
	}
	return allowedBy(pdu, current), nil
}
