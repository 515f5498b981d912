package federationapi

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"
)

// EDUHandler acts on one EDU of a transaction from origin. An error is
// logged and the EDU dropped: EDUs are not retried (the spec gives the
// sender no per-EDU answer), so a handler must leave nothing half done.
type EDUHandler func(ctx context.Context, origin spec.ServerName, content json.RawMessage) error

// eduHandlers routes EDUs by type. Filled while the server is wired, before
// it serves requests; read-only afterwards.
type eduHandlers map[string]EDUHandler

// HandleEDU makes h the handler of EDUs of type eduType (m.typing,
// m.receipt, m.device_list_update, ...). Call before serving requests;
// EDUs of types without a handler are accepted and ignored.
func (f *API) HandleEDU(eduType string, h EDUHandler) {
	if f.edus == nil {
		f.edus = eduHandlers{}
	}
	f.edus[eduType] = h
}

// inboundEDU is an EDU as a transaction carries it.
type inboundEDU struct {
	Type    string          `json:"edu_type"`
	Content json.RawMessage `json:"content"`
}

// parseEDUs reads a transaction's EDUs defensively: the malformed ones
// (not an object with a type and an object content) are left out.
func parseEDUs(raws []json.RawMessage) (edus []inboundEDU, malformed int) {
	for _, raw := range raws {
		var edu inboundEDU
		if json.Unmarshal(raw, &edu) != nil || edu.Type == "" {
			malformed++
			continue
		}
		c := bytes.TrimSpace(edu.Content)
		if len(c) == 0 {
			edu.Content = json.RawMessage("{}")
		} else if c[0] != '{' {
			malformed++
			continue
		}
		edus = append(edus, edu)
	}
	return edus, malformed
}

// processEDUs hands a transaction's EDUs to their handlers, in order.
func (f *API) processEDUs(ctx context.Context, log logrus.FieldLogger, origin spec.ServerName, raws []json.RawMessage) {
	edus, malformed := parseEDUs(raws)
	if malformed > 0 {
		log.WithField("origin", origin).Debugf("%d malformed EDUs ignored", malformed)
	}
	for _, edu := range edus {
		h := f.edus[edu.Type]
		if h == nil {
			continue
		}
		if err := h(ctx, origin, edu.Content); err != nil {
			log.WithError(err).WithFields(logrus.Fields{"origin": origin, "edu_type": edu.Type}).Debug("EDU dropped")
		}
	}
}
