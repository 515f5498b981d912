package federationapi

import (
	"context"
	"errors"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"matrixhs/internal/ephemeral"
)

// Typing notifications, read receipts and presence across servers (the
// m.typing, m.receipt and m.presence EDUs of the server-server API):
//
//   - Out (ephemeral_out.go): a local user's change goes to the servers
//     that share the room (typing, public read receipts: the room's joined
//     servers) or any room with the user (presence, when it is on). Private
//     receipts never leave the server. A local user who goes on typing is
//     repeated every EDUOptions.TypingPing, so other servers, which time
//     remote typing out, keep showing it; an online user's presence is
//     repeated every EDUOptions.PresencePing, and its idle decay is sent as
//     it happens.
//   - In (ephemeral_in.go): an EDU is applied only for users of the
//     sending server, in rooms this server is in, whose server ACL lets the
//     sender in and where the user is joined (presence: users sharing a
//     room with this server); everything else is ignored. Remote typing
//     times out after EDUOptions.RemoteTypingTimeout unless repeated.
//
// Local clients see the result in /sync and sliding sync as they see their
// own server's users.

// EDUOptions tune typing, receipts and presence over federation; zero
// values take the defaults (Synapse's timings).
type EDUOptions struct {
	// RemoteTypingTimeout is how long another server's user shows as
	// typing unless the server repeats or stops it (60s).
	RemoteTypingTimeout time.Duration
	// TypingPing is how often a local user's ongoing typing is repeated
	// to other servers (40s; below RemoteTypingTimeout).
	TypingPing time.Duration
	// PresencePing is how often an online local user's unchanged presence
	// is repeated (25m; below ephemeral.RemotePresenceTimeout).
	PresencePing time.Duration
	// Tick is how often typing pings, presence decay and the expiry of
	// other servers' presence are looked at (10s).
	Tick time.Duration
}

func (o EDUOptions) withDefaults() EDUOptions {
	if o.RemoteTypingTimeout <= 0 {
		o.RemoteTypingTimeout = 60 * time.Second
	}
	if o.TypingPing <= 0 {
		o.TypingPing = 40 * time.Second
	}
	if o.PresencePing <= 0 {
		o.PresencePing = 25 * time.Minute
	}
	if o.Tick <= 0 {
		o.Tick = 10 * time.Second
	}
	return o
}

// EDUQueue queues an EDU for other servers (the outbound sender).
type EDUQueue interface {
	QueueEDU(ctx context.Context, destinations []string, edu gomatrixserverlib.EDU) error
}

// Ephemeral carries typing, receipts and presence between this server and
// others (see AttachEphemeral); Stop it before the queue and database.
type Ephemeral struct {
	in  *ephemeralIn
	out *ephemeralOut
}

// AttachEphemeral makes the API take other servers' m.typing, m.receipt
// and m.presence EDUs into eph, and sends eph's local changes to other
// servers through queue. Call it after AttachRooms and before serving;
// with federation disabled it does nothing (and returns nil).
func (f *API) AttachEphemeral(eph *ephemeral.Service, queue EDUQueue) (*Ephemeral, error) {
	if f.opts.Disabled {
		return nil, nil
	}
	if f.rooms == nil {
		return nil, errors.New("federation: AttachEphemeral needs AttachRooms first")
	}
	opts := f.opts.EDU.withDefaults()
	log := f.opts.Log.WithField("component", "federation-ephemeral")
	in := &ephemeralIn{f: f, eph: eph, opts: opts, log: log}
	f.HandleEDU("m.typing", in.typing)
	f.HandleEDU("m.receipt", in.receipt)
	f.HandleEDU("m.presence", in.presence)
	out := newEphemeralOut(f.db, string(f.serverName), eph, queue, opts, log, f.now)
	eph.SetFederation(out)
	return &Ephemeral{in: in, out: out}, nil
}

// Stop ends the outbound work, queueing the receipts still waiting
// (typing and presence not yet queued are dropped: they are of the moment).
func (e *Ephemeral) Stop() {
	if e != nil {
		e.out.stop()
	}
}
