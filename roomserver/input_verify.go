package roomserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"
)

// Steps 1-3 of the checks on receipt of a PDU: a valid event (the caller
// parsed it), correct signatures, and a matching content hash (parsing
// with the room version's NewEventFromUntrustedJSON redacts an event whose
// hash does not match, so it is processed redacted). This file checks the
// signatures: of the sending server and, for events of a user of another
// server, of that user's server too.

// ErrUnverified marks events whose signatures do not check out: dropped.
var ErrUnverified = errors.New("signature check failed")

func (rs *Roomserver) verifySignatures(ctx context.Context, pdu gomatrixserverlib.PDU) error {
	if rs.verifier == nil {
		return nil // the caller vouches for the events (tests, trusted input)
	}
	if err := gomatrixserverlib.VerifyEventSignatures(ctx, pdu, rs.verifier, userIDForSender); err != nil {
		return fmt.Errorf("%w: event %s: %v", ErrUnverified, pdu.EventID(), err)
	}
	return nil
}
