package appservice

import (
	"context"
	"errors"

	"matrixhs/storage"
)

// Status is how an appservice stands, for admins.
type Status struct {
	ID         string     `json:"id"`
	File       string     `json:"file"`
	URL        string     `json:"url"`
	Sender     string     `json:"sender"`
	Namespaces Namespaces `json:"namespaces"`
	Protocols  []string   `json:"protocols"`
	Ephemeral  bool       `json:"receive_ephemeral"`
	MSC3202    bool       `json:"org.matrix.msc3202"`
	MSC4190    bool       `json:"io.element.msc4190"`
	// RateLimited is the registration's rate_limited (the server limits
	// only sign-ups and password logins, which appservices do not use).
	RateLimited bool `json:"rate_limited"`
	// State is "up" (the last transaction was taken, or none was due),
	// "down" (the transaction in flight failed its last attempt) or
	// "no_url" (nothing is pushed).
	State string `json:"state"`
	// LastTxnID is the last transaction ID used; InFlight describes the
	// transaction waiting for the appservice (nil: none).
	LastTxnID     int64     `json:"last_txn_id"`
	InFlight      *InFlight `json:"txn_in_flight,omitempty"`
	Failures      int       `json:"consecutive_failures"`
	LastSuccessTS int64     `json:"last_success_ts,omitempty"`
	LastFailureTS int64     `json:"last_failure_ts,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	// Queued counts typing and presence updates waiting.
	Queued int `json:"queued_ephemeral"`
}

// InFlight is a transaction not yet taken.
type InFlight struct {
	TxnID     int64 `json:"txn_id"`
	Events    int   `json:"events"`
	StartedTS int64 `json:"started_ts"`
}

// Statuses lists every registered appservice with its delivery state.
func (s *Service) Statuses(ctx context.Context) ([]Status, error) {
	out := []Status{}
	for _, r := range s.All() {
		st := Status{ID: r.ID, File: r.File, URL: r.PushURL(), Sender: r.SenderID, Namespaces: r.Namespaces,
			Protocols: r.Protocols, Ephemeral: r.Ephemeral(), MSC3202: r.MSC3202, MSC4190: r.MSC4190, RateLimited: r.IsRateLimited(), State: "up"}
		if st.Protocols == nil {
			st.Protocols = []string{}
		}
		ds, err := s.db.AppServiceState(ctx, r.ID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		st.LastTxnID, st.Failures, st.LastSuccessTS, st.LastFailureTS, st.LastError = ds.LastTxn, ds.Failures, ds.LastSuccessTS, ds.LastFailureTS, ds.LastError
		if ds.TxnBody != nil {
			st.InFlight = &InFlight{TxnID: ds.LastTxn, Events: ds.TxnEvents, StartedTS: ds.TxnStartedTS}
		}
		if q, err := s.db.AppServiceQueue(ctx, r.ID, 10000); err == nil {
			st.Queued = len(q)
		}
		switch {
		case st.URL == "":
			st.State = "no_url"
		case ds.Failures > 0:
			st.State = "down"
		}
		out = append(out, st)
	}
	return out, nil
}
