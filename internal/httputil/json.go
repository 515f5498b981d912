package httputil

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/sirupsen/logrus"

	"matrixhs/storage"
)

// WriteJSON writes v as a JSON response.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body, _ = json.Marshal(Internal())
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// WriteError writes err as a Matrix error; anything not an *Error is logged
// with the request's logger and answered as a 500. A request whose client
// went away (a dropped long-poll, say) is no server error, whatever the
// handler returned on its way out: it is answered StatusClientClosed, which
// the access log records at info level.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	if ClientGone(r) {
		WriteJSON(w, StatusClientClosed, &Error{Status: StatusClientClosed, Code: "M_UNKNOWN", Msg: "Client closed the request"})
		return
	}
	var me *Error
	if storage.IsUnavailable(err) {
		// The database server is down or restarting: nothing of the request
		// was stored, and the client's retry will be answered when it is back.
		Logger(r.Context()).WithError(err).Warn("request failed: database unavailable")
		w.Header().Set("Retry-After", "1")
		me = Unavailable()
	} else if !errors.As(err, &me) {
		Logger(r.Context()).WithError(err).Error("request failed")
		me = Internal()
	} else if me.Status >= 500 {
		Logger(r.Context()).WithError(err).Error("request failed")
	}
	WriteJSON(w, me.Status, me)
}

// StatusClientClosed is the status recorded for a request the client
// abandoned before the answer (nginx's 499): no one reads the response.
const StatusClientClosed = 499

// ClientGone reports whether the client of r cancelled it (closed the
// connection or gave up). A server-side deadline is not the client's doing
// and does not count.
func ClientGone(r *http.Request) bool {
	return errors.Is(r.Context().Err(), context.Canceled)
}

// Handler is an endpoint that returns its JSON body (answered with 200) or an
// error (an *Error is answered as is; anything else becomes a 500).
type Handler func(r *http.Request) (any, error)

func (h Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := h(r)
	if err != nil {
		WriteError(w, r, err)
		return
	}
	if resp, ok := body.(Response); ok {
		WriteJSON(w, resp.Status, resp.Body)
		return
	}
	WriteJSON(w, http.StatusOK, body)
}

// Response is returned by a Handler that answers with a status other than 200.
type Response struct {
	Status int
	Body   any
}

// Empty is the {} body many endpoints answer with.
var Empty = struct{}{}

// ReadBody reads the whole request body, answering 413 M_TOO_LARGE when the
// body limit set by the middleware is exceeded.
func ReadBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, TooLarge("request body exceeds %d bytes", tooLarge.Limit)
	}
	if err != nil {
		return nil, BadJSON("reading body: %v", err)
	}
	return body, nil
}

// DecodeJSON reads a JSON object body into dst: 400 M_NOT_JSON for a body
// that is not valid JSON, 400 M_BAD_JSON for valid JSON that is not an
// object or has fields of the wrong type.
// An empty body counts as {} (several endpoints allow it).
//
// Strings may not hold a NUL character: the fields of these bodies end up
// in text columns (names, device names, pusher keys), which PostgreSQL
// cannot hold NUL in, so both engines refuse it alike (400 M_BAD_JSON).
// Event content keeps it (readContent: stored as JSON, escaped).
func DecodeJSON(r *http.Request, dst any) error {
	body, err := ReadBody(r)
	if err != nil {
		return err
	}
	if err := Unmarshal(body, dst); err != nil {
		return err
	}
	if hasNULEscape(body) {
		return BadJSON("strings in the request body may not contain NUL characters")
	}
	return nil
}

// DecodeJSONWithNUL is DecodeJSON for other servers' requests, whose
// events may hold NUL characters in their content as the spec allows.
func DecodeJSONWithNUL(r *http.Request, dst any) error {
	body, err := ReadBody(r)
	if err != nil {
		return err
	}
	return Unmarshal(body, dst)
}

// hasNULEscape reports whether valid JSON holds a NUL character: the
// escape \u0000 inside a string (raw control characters are invalid JSON).
func hasNULEscape(b []byte) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(`\u0000`))
		if j < 0 {
			return false
		}
		j += i
		// The backslash escapes only if an even number of backslashes
		// precedes it.
		n := 0
		for k := j - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return true
		}
		i = j + 1
	}
}

// Unmarshal is DecodeJSON for a body already read.
func Unmarshal(body []byte, dst any) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		body = []byte("{}")
	}
	// encoding/json accepts invalid UTF-8 in strings (replacing it); the
	// spec's JSON is UTF-8, so such bodies are M_NOT_JSON.
	if !json.Valid(body) || !utf8.Valid(body) {
		return NotJSON("request body is not valid UTF-8 JSON")
	}
	if jsonDepth(body) > MaxJSONDepth {
		// Stored content this deep would break SQLite's JSON functions
		// (they stop at 1,000 levels) for every later reader.
		return BadJSON("request body is nested deeper than %d levels", MaxJSONDepth)
	}
	if body[0] != '{' {
		// Valid JSON of the wrong shape is M_BAD_JSON (M_NOT_JSON is for unparseable bodies).
		return BadJSON("request body must be a JSON object")
	}
	if err := json.Unmarshal(body, dst); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return BadJSON("field %q has the wrong type: want %s", typeErr.Field, typeErr.Type)
		}
		return BadJSON("bad request body: %v", err)
	}
	return nil
}

// MaxJSONDepth bounds the nesting of objects and arrays in request bodies;
// no Matrix request needs more than a handful of levels.
const MaxJSONDepth = 100

// jsonDepth is the deepest nesting of objects and arrays in valid JSON.
func jsonDepth(b []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

type loggerKey struct{}

// Logger returns the request-scoped logger (with req_id), or the standard one.
func Logger(ctx interface{ Value(any) any }) logrus.FieldLogger {
	if l, ok := ctx.Value(loggerKey{}).(logrus.FieldLogger); ok {
		return l
	}
	return logrus.StandardLogger()
}

// OffsetLimit parses the admin API's from/limit paging (non-negative
// integers; limit defaults to def and is capped at 1000).
func OffsetLimit(q url.Values, def int) (from, limit int, err error) {
	limit = def
	if v := q.Get("from"); v != "" {
		if from, err = strconv.Atoi(v); err != nil || from < 0 {
			return 0, 0, InvalidParam("from must be a non-negative integer")
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			return 0, 0, InvalidParam("limit must be a non-negative integer")
		}
	}
	return from, min(limit, 1000), nil
}

// IsNull reports an absent or null JSON value.
func IsNull(raw json.RawMessage) bool {
	s := bytes.TrimSpace(raw)
	return len(s) == 0 || string(s) == "null"
}
