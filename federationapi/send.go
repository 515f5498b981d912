package federationapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"matrixhs/federationapi/fedauth"
	"matrixhs/internal/httputil"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// PUT /_matrix/federation/v1/send/{txnId}: a transaction of PDUs (room
// events) and EDUs from another server. Transactions of one origin are
// processed one at a time, in the order they arrive (txnqueue.go); within
// one, the rooms proceed independently, so a room that needs events
// fetched from elsewhere holds up no other; a room takes the events of one
// transaction at a time, whatever their origin. The answer lists each PDU's
// outcome and is kept for a day: a retried transaction gets it again
// without its PDUs being processed twice.

// Limits of the spec on one transaction.
const (
	maxTxnPDUs = 50
	maxTxnEDUs = 100
)

const (
	// txnRoomConcurrency bounds the rooms of one transaction processed at
	// once.
	txnRoomConcurrency = 8
	// txnTimeout bounds the processing of one transaction (fetching
	// missing events included); it goes on when the sender hangs up, so
	// that its retry finds the answer.
	txnTimeout = 3 * time.Minute
	// txnKeep is how long answers are kept; txnPruneEvery how often old
	// ones are deleted.
	txnKeep       = 24 * time.Hour
	txnPruneEvery = 10 * time.Minute
)

// txnBody is a transaction as sent. Fields are decoded loosely (raw) where
// a bad one must not cost the whole transaction.
type txnBody struct {
	PDUs []json.RawMessage `json:"pdus"`
	EDUs []json.RawMessage `json:"edus"`
}

// pduResult is one PDU's outcome: {} or {"error": "..."}.
type pduResult struct {
	Error string `json:"error,omitempty"`
}

// sendResponse is the answer to a transaction.
type sendResponse struct {
	PDUs map[string]pduResult `json:"pdus"`
}

// sendTransaction serves PUT /_matrix/federation/v1/send/{txnId}.
func (f *API) sendTransaction(r *http.Request, origin spec.ServerName) (any, error) {
	txnID := httputil.PathVar(r, "txnId")
	if txnID == "" {
		return nil, httputil.InvalidParam("bad transaction ID")
	}
	var body txnBody
	if err := httputil.DecodeJSONWithNUL(r, &body); err != nil {
		return nil, err
	}
	if len(body.PDUs) > maxTxnPDUs || len(body.EDUs) > maxTxnEDUs {
		return nil, httputil.BadJSON("a transaction carries at most %d PDUs and %d EDUs", maxTxnPDUs, maxTxnEDUs)
	}
	release, err := f.rooms.txns.acquire(r.Context(), origin)
	if err != nil {
		return nil, err
	}
	defer release()
	if resp, found, err := f.db.FederationTxnResponse(r.Context(), string(origin), txnID); err != nil {
		return nil, err
	} else if found {
		return json.RawMessage(resp), nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), txnTimeout)
	defer cancel()
	results, err := f.processPDUs(ctx, origin, body.PDUs)
	if err != nil {
		return nil, err
	}
	f.processEDUs(ctx, httputil.Logger(r.Context()), origin, body.EDUs)
	resp, err := json.Marshal(sendResponse{PDUs: results})
	if err != nil {
		return nil, err
	}
	if err := f.recordTxn(ctx, origin, txnID, resp); err != nil {
		return nil, err
	}
	return json.RawMessage(resp), nil
}

// recordTxn stores the answer to a transaction, and now and then forgets
// old ones.
func (f *API) recordTxn(ctx context.Context, origin spec.ServerName, txnID string, resp []byte) error {
	now := f.now()
	prune := f.rooms.txns.dueForPrune(now)
	return f.db.Write(ctx, func(tx *storage.Tx) error {
		if prune {
			if err := tx.PruneFederationTxns(ctx, now.Add(-txnKeep).UnixMilli()); err != nil {
				return err
			}
		}
		return tx.StoreFederationTxn(ctx, string(origin), txnID, resp, now.UnixMilli())
	})
}

// txnPDU is one PDU of a transaction, parsed.
type txnPDU struct {
	pdu gomatrixserverlib.PDU
	idx int // place in the transaction
}

// processPDUs runs a transaction's PDUs through the pipeline, room by room,
// and returns each one's outcome by event ID.
func (f *API) processPDUs(ctx context.Context, origin spec.ServerName, raws []json.RawMessage) (map[string]pduResult, error) {
	results := map[string]pduResult{}
	byRoom := map[string][]txnPDU{}
	rooms := map[string]*roomserver.FederationRoom{}
	var order []string
	for i, raw := range raws {
		roomID, ok := pduRoomID(raw)
		if !ok {
			continue // nothing to key an answer by: ignored, as Synapse does
		}
		fr, known := rooms[roomID]
		if !known {
			var err error
			fr, err = f.rooms.rs.FederationRoom(ctx, roomID)
			if err != nil && !errors.Is(err, roomserver.ErrRoomNotFound) {
				return nil, err
			}
			rooms[roomID] = fr
		}
		if fr == nil || !fr.LocalJoined {
			// The one event of such a room taken: an inviter withdrawing a
			// local user's out-of-band invite.
			handled, err := f.rooms.rs.InputRescindedInvite(ctx, origin, raw)
			if err != nil {
				f.opts.Log.WithError(err).WithField("room_id", roomID).Debug("federation: rescinded invite refused")
			}
			if handled && err == nil {
				continue
			}
			if id, ok := guessEventID(raw); ok {
				results[id] = pduResult{Error: "This server is not in room " + roomID}
			}
			continue
		}
		pdu, err := roomserver.ParseRemoteEvent(fr.Version, raw)
		if err != nil {
			if id, ok := eventIDIn(fr.Version, raw); ok {
				results[id] = pduResult{Error: "Invalid event: " + err.Error()}
			}
			continue
		}
		if _, seen := byRoom[roomID]; !seen {
			order = append(order, roomID)
		}
		byRoom[roomID] = append(byRoom[roomID], txnPDU{pdu: pdu, idx: i})
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	sem := make(chan struct{}, txnRoomConcurrency)
	for _, roomID := range order {
		wg.Add(1)
		sem <- struct{}{}
		go func(fr *roomserver.FederationRoom, pdus []txnPDU) {
			defer func() { <-sem; wg.Done() }()
			out, err := f.processRoom(ctx, origin, fr, pdus)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			for id, res := range out {
				results[id] = res
			}
		}(rooms[roomID], byRoom[roomID])
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return results, nil
}

// processRoom runs one room's PDUs of a transaction through the pipeline,
// fetching what they lack from the origin.
func (f *API) processRoom(ctx context.Context, origin spec.ServerName, fr *roomserver.FederationRoom, pdus []txnPDU) (map[string]pduResult, error) {
	out := make(map[string]pduResult, len(pdus))
	var acl *fedauth.ACL
	if fr.ACL != nil {
		parsed := fedauth.ParseACL(fr.ACL)
		acl = &parsed
	}
	if acl != nil && !acl.Allows(origin) {
		for _, p := range pdus {
			out[p.pdu.EventID()] = pduResult{Error: "Server " + string(origin) + " is banned from this room by its server ACL"}
		}
		return out, nil
	}
	// Oldest first (what they build on goes in first), then as sent.
	sort.SliceStable(pdus, func(i, j int) bool { return pdus[i].pdu.Depth() < pdus[j].pdu.Depth() })
	in := make([]roomserver.InputEvent, 0, len(pdus))
	for _, p := range pdus {
		if acl != nil {
			if sender := senderServer(p.pdu); !acl.Allows(sender) {
				out[p.pdu.EventID()] = pduResult{Error: "Sender's server " + string(sender) + " is banned from this room by its server ACL"}
				continue
			}
		}
		in = append(in, roomserver.InputEvent{Kind: roomserver.KindNew, Event: p.pdu, Origin: origin})
	}
	if len(in) == 0 {
		return out, nil
	}
	release, err := f.rooms.turns.acquire(ctx, fr.ID)
	if err != nil {
		return nil, err
	}
	res, err := f.rooms.rs.InputFetching(ctx, f.rooms.fetcher, in)
	release()
	if err != nil {
		return nil, err
	}
	for i, r := range res {
		id := in[i].Event.EventID()
		switch {
		case r.Err == nil:
			// Rejected and soft-failed events were handled: as Synapse,
			// no error (they are stored, and kept from clients).
			out[id] = pduResult{}
		case errors.Is(r.Err, roomserver.ErrUnverified):
			out[id] = pduResult{Error: r.Err.Error()}
		default:
			// An event whose gaps could not be filled (prev events the
			// origin withheld, auth events nowhere to be had) is dropped
			// with a log line and no error in the answer, as Synapse
			// answers a transaction before it processes the PDUs: the
			// sender cannot act on such errors anyway.
			f.opts.Log.WithError(r.Err).WithFields(logrus.Fields{"origin": origin, "event_id": id, "room_id": fr.ID}).
				Info("federation: event from a transaction dropped")
			out[id] = pduResult{}
		}
	}
	return out, nil
}

// senderServer is the server of a PDU's sender.
func senderServer(pdu gomatrixserverlib.PDU) spec.ServerName {
	_, domain, _ := strings.Cut(string(pdu.SenderID()), ":")
	return spec.ServerName(domain)
}

// pduRoomID reads the room ID of a PDU as sent.
func pduRoomID(raw json.RawMessage) (string, bool) {
	var head struct {
		RoomID json.RawMessage `json:"room_id"`
	}
	if json.Unmarshal(raw, &head) != nil {
		return "", false
	}
	var id string
	if json.Unmarshal(head.RoomID, &id) != nil || !strings.HasPrefix(id, "!") || len(id) > 255 {
		return "", false
	}
	return id, true
}

// eventIDIn is the ID of an event as sent, by the room version's rules
// (the event_id field of old versions, else the reference hash), for
// answering about events that did not parse.
func eventIDIn(ver gomatrixserverlib.IRoomVersion, raw json.RawMessage) (id string, ok bool) {
	// gomatrixserverlib panics computing the ID of some malformed events
	// (its trusted parser assumes checked JSON): no ID for those.
	defer func() {
		if recover() != nil {
			id, ok = "", false
		}
	}()
	if ver.EventIDFormat() == gomatrixserverlib.EventIDFormatV1 {
		var head struct {
			EventID json.RawMessage `json:"event_id"`
		}
		var id string
		if json.Unmarshal(raw, &head) == nil && json.Unmarshal(head.EventID, &id) == nil && strings.HasPrefix(id, "$") {
			return id, true
		}
		return "", false
	}
	if pdu, err := ver.NewEventFromTrustedJSON(raw, false); err == nil {
		return pdu.EventID(), true
	}
	return "", false
}

// guessEventID is eventIDIn for rooms this server does not know the
// version of: the event_id of the oldest versions if it has one, else as
// the room versions in use today (v11 and later) compute it.
func guessEventID(raw json.RawMessage) (string, bool) {
	if id, ok := eventIDIn(gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV1), raw); ok {
		return id, true
	}
	return eventIDIn(gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV11), raw)
}
