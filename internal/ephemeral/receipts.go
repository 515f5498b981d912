package ephemeral

import (
	"context"
	"errors"

	"matrixhs/storage"
)

// ReceiptTypes are the receipts a user may send: public and private read
// receipts. (m.fully_read is a read marker, room account data, not a receipt.)
var ReceiptTypes = []string{"m.read", "m.read.private"}

// Receipt is a user's read receipt for an event.
type Receipt struct {
	UserID, RoomID string
	Type           string // one of ReceiptTypes
	EventID        string
	ThreadID       string // "" for the unthreaded receipt; else a thread root or "main"
	TS             int64  // ms; 0: now
}

// PutReceipt records a read receipt after checking its type, that the user
// is joined to the room and that the event is one of the room's they may
// see. Receipts only move forward; an older one changes nothing. Storing it
// wakes the room's long-polls.
func (s *Service) PutReceipt(ctx context.Context, r Receipt) error {
	if r.Type != ReceiptTypes[0] && r.Type != ReceiptTypes[1] {
		return refuse(ErrInvalid, "unknown receipt type %q", r.Type)
	}
	info, viewer, err := s.joinedRoom(ctx, r.UserID, r.RoomID)
	if err != nil {
		return err
	}
	e, err := s.db.EventByID(ctx, r.EventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (e.RoomNID != info.NID || e.StreamPos == 0 || !viewer.CanSee(e))) {
		return refuse(ErrUnknownEvent, "Event not found")
	}
	if err != nil {
		return err
	}
	if r.TS == 0 {
		r.TS = s.now().UnixMilli()
	}
	var stored bool
	err = s.db.Write(ctx, func(tx *storage.Tx) (err error) {
		stored, err = tx.PutReceipt(ctx, storage.Receipt{
			RoomNID: info.NID, UserID: r.UserID, Type: r.Type, ThreadID: r.ThreadID,
			EventID: e.EventID, EventPos: e.StreamPos, TS: r.TS,
		})
		return err
	})
	if err != nil {
		return err
	}
	// Private receipts never leave the server.
	if stored && r.Type == ReceiptTypes[0] && s.fed != nil {
		r.EventID = e.EventID
		s.fed.ReceiptStored(r)
	}
	return nil
}

// Receipts is the content of a room's m.receipt event:
// event ID → receipt type → user ID → receipt.
type Receipts map[string]map[string]map[string]ReceiptInfo

// ReceiptInfo is one user's receipt in an m.receipt event.
type ReceiptInfo struct {
	TS       int64  `json:"ts"`
	ThreadID string `json:"thread_id,omitempty"`
}

// RoomReceipts are a room's receipts that changed in (from, to] as reader
// sees them (others' private receipts left out); nil when there are none.
func (s *Service) RoomReceipts(ctx context.Context, roomNID, from, to int64, reader string) (Receipts, error) {
	rs, err := s.db.ReceiptsSince(ctx, roomNID, from, to)
	if err != nil {
		return nil, err
	}
	return receiptsFor(rs, reader), nil
}

func receiptsFor(receipts []storage.Receipt, reader string) Receipts {
	var out Receipts
	for _, r := range receipts {
		if r.Type == "m.read.private" && r.UserID != reader {
			continue
		}
		if out == nil {
			out = Receipts{}
		}
		byType := out[r.EventID]
		if byType == nil {
			byType = map[string]map[string]ReceiptInfo{}
			out[r.EventID] = byType
		}
		if byType[r.Type] == nil {
			byType[r.Type] = map[string]ReceiptInfo{}
		}
		// A user's unthreaded and threaded receipts on one event share a
		// key: the unthreaded one wins (MSC4102, as Synapse).
		if prev, ok := byType[r.Type][r.UserID]; ok && prev.ThreadID == "" && r.ThreadID != "" {
			continue
		}
		byType[r.Type][r.UserID] = ReceiptInfo{TS: r.TS, ThreadID: r.ThreadID}
	}
	return out
}

// Without returns the receipts without those of the given users (the
// reader's ignore list); nil when none are left.
func (rs Receipts) Without(users map[string]bool) Receipts {
	if len(users) == 0 || rs == nil {
		return rs
	}
	var out Receipts
	for eventID, byType := range rs {
		for typ, byUser := range byType {
			for u, info := range byUser {
				if users[u] {
					continue
				}
				if out == nil {
					out = Receipts{}
				}
				if out[eventID] == nil {
					out[eventID] = map[string]map[string]ReceiptInfo{}
				}
				if out[eventID][typ] == nil {
					out[eventID][typ] = map[string]ReceiptInfo{}
				}
				out[eventID][typ][u] = info
			}
		}
	}
	return out
}
