package httputil

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"matrixhs/storage"
)

// TestDatabaseUnavailableIs503: a request that failed because the database
// server is gone is answered 503 M_UNKNOWN with Retry-After, not 500.
func TestDatabaseUnavailableIs503(t *testing.T) {
	for err, want := range map[error]int{
		fmt.Errorf("storing: %w", storage.ErrUnavailable): http.StatusServiceUnavailable,
		fmt.Errorf("storing: boom"):                       http.StatusInternalServerError,
	} {
		rec := httptest.NewRecorder()
		WriteError(rec, httptest.NewRequest("GET", "/", nil), err)
		var body struct{ Errcode string }
		json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != want || body.Errcode != "M_UNKNOWN" {
			t.Errorf("%v: %d %s, want %d M_UNKNOWN", err, rec.Code, rec.Body, want)
		}
		if retry := rec.Header().Get("Retry-After"); (want == 503) != (retry != "") {
			t.Errorf("%v: Retry-After %q", err, retry)
		}
	}
}
