package httputil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// SetCORS sets the headers the spec requires on every client-API response so
// browser clients such as Element Web can call the server.
func SetCORS(h http.Header) {
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization, Date")
	h.Set("Access-Control-Expose-Headers", "ETag, Content-Disposition, Content-Length")
}

// Outer wraps the whole API: request ID and access log, panic recovery,
// CORS on every response, OPTIONS preflights answered before routing or
// auth, and a body size limit.
func Outer(next http.Handler, log logrus.FieldLogger, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		reqID := newRequestID()
		l := log.WithField("req_id", reqID)
		ctx := context.WithValue(r.Context(), loggerKey{}, logrus.FieldLogger(l))
		r = r.WithContext(ctx)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		SetCORS(rec.Header())
		defer func() {
			if p := recover(); p != nil {
				l.WithField("panic", fmt.Sprint(p)).Error("handler panicked\n" + string(debug.Stack()))
				if !rec.wrote {
					WriteJSON(rec, http.StatusInternalServerError, Internal())
				}
			}
			entry := l.WithFields(logrus.Fields{
				"method": r.Method, "path": r.URL.Path, "status": rec.status,
				"duration_ms": float64(time.Since(start).Microseconds()) / 1000,
			})
			switch {
			case rec.status >= 500:
				entry.Warn("request")
			case rec.status == StatusClientClosed || (!rec.wrote && ClientGone(r)):
				// The client left before the answer: routine for long-polls.
				entry.WithField("status", StatusClientClosed).Info("request cancelled by the client")
			default:
				entry.Debug("request")
			}
		}()
		if r.Method == http.MethodOptions {
			WriteJSON(rec, http.StatusOK, Empty)
			return
		}
		if r.Body != nil && !strings.HasPrefix(r.URL.Path, "/_matrix/media/") {
			r.Body = http.MaxBytesReader(rec, r.Body, maxBody)
		}
		next.ServeHTTP(rec, r)
	})
}

func newRequestID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status = code
		s.wrote = true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Flush lets long-polls and streamed downloads flush through the recorder.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController access to the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
