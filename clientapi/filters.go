package clientapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"matrixhs/clientapi/filter"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// createFilter serves POST /_matrix/client/v3/user/{userId}/filter.
func (a *API) createFilter(r *http.Request, s *accounts.Session) (any, error) {
	if err := requireSelf(s, pathVar(r, "userId")); err != nil {
		return nil, err
	}
	body, err := httputil.ReadBody(r)
	if err != nil {
		return nil, err
	}
	var f filter.Filter
	if err := httputil.Unmarshal(body, &f); err != nil {
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, httputil.BadJSON("%v", err)
	}
	// The filter is stored as sent (compacted) so GET returns what the
	// client uploaded, including fields this server does not interpret.
	var compacted bytes.Buffer
	if len(bytes.TrimSpace(body)) == 0 {
		compacted.WriteString("{}")
	} else if err := json.Compact(&compacted, body); err != nil {
		return nil, httputil.NotJSON("request body is not valid JSON")
	}
	var id int64
	err = a.db.Write(r.Context(), func(tx *storage.Tx) error {
		var err error
		id, err = tx.InsertFilter(r.Context(), s.UserID, compacted.Bytes())
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"filter_id": strconv.FormatInt(id, 10)}, nil
}

// getFilter serves GET /_matrix/client/v3/user/{userId}/filter/{filterId}.
func (a *API) getFilter(r *http.Request, s *accounts.Session) (any, error) {
	if err := requireSelf(s, pathVar(r, "userId")); err != nil {
		return nil, err
	}
	id, err := strconv.ParseInt(pathVar(r, "filterId"), 10, 64)
	if err != nil {
		return nil, httputil.NotFound("No such filter")
	}
	f, err := a.db.Filter(r.Context(), s.UserID, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("No such filter")
	}
	if err != nil {
		return nil, err
	}
	return json.RawMessage(f), nil
}
