package httputil

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// A request its client abandoned is logged at info with status 499, never
// as a server error, whatever error the handler returned on its way out.
func TestCancelledRequestIsNoServerError(t *testing.T) {
	for name, handlerErr := range map[string]error{
		"context error":  context.Canceled,
		"wrapped":        fmt.Errorf("reading rows: %w", context.Canceled),
		"unrelated":      errors.New("sql: interrupted"),
		"matrix 500-ish": Internal(),
	} {
		t.Run(name, func(t *testing.T) {
			log, hook := test.NewNullLogger()
			log.SetLevel(logrus.DebugLevel)
			h := Outer(Handler(func(*http.Request) (any, error) { return nil, handlerErr }), log, 1<<20)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			req := httptest.NewRequest("GET", "/_matrix/client/v3/sync", nil).WithContext(ctx)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != StatusClientClosed {
				t.Fatalf("status = %d, want %d", rec.Code, StatusClientClosed)
			}
			if len(hook.AllEntries()) != 1 {
				t.Fatalf("want one access-log line, got %d: %v", len(hook.AllEntries()), hook.AllEntries())
			}
			e := hook.LastEntry()
			if e.Level != logrus.InfoLevel || e.Data["status"] != StatusClientClosed {
				t.Fatalf("logged %s status %v (%q), want info 499", e.Level, e.Data["status"], e.Message)
			}
		})
	}
}

// A request that fails while its client is still there stays a 500 error.
func TestServerErrorStillLogged(t *testing.T) {
	log, hook := test.NewNullLogger()
	h := Outer(Handler(func(*http.Request) (any, error) { return nil, errors.New("disk on fire") }), log, 1<<20)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/_matrix/client/v3/sync", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500", rec.Code)
	}
	var sawError bool
	for _, e := range hook.AllEntries() {
		sawError = sawError || e.Level == logrus.ErrorLevel
	}
	if !sawError {
		t.Fatalf("server error not logged at error level: %v", hook.AllEntries())
	}
}
