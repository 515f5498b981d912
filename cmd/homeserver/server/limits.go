package server

import (
	"net/http"
	"strings"
	"time"

	"matrixhs/config"
)

// minBodyRate is the slowest upload speed the body deadline allows for:
// every 32 KiB a body may hold adds a second to its deadline.
const minBodyRate = 32 << 10

// bodyDeadline bounds how long a request's body may take to arrive (the
// server sets no overall read timeout: it would also cut long-polls). The
// deadline is set on the connection when the handler starts, from the
// largest body the request may send (its Content-Length, or the endpoint's
// size limit). net/http lifts it when the body has been read to its end
// (it then clears the deadline to watch for the client going away), so a
// long-poll whose body came quickly is not cut when its wait outlasts it.
func bodyDeadline(cfg *config.Config, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(bodyTimeout(cfg, r))); err != nil {
			next.ServeHTTP(w, r) // not a plain HTTP/1 connection
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bodyTimeout is the time a request's body gets: the configured base plus a
// second per 32 KiB of the largest body the request may send.
func bodyTimeout(cfg *config.Config, r *http.Request) time.Duration {
	limit := cfg.Server.MaxRequestBodyBytes
	if strings.HasPrefix(r.URL.Path, "/_matrix/media/") && strings.Contains(r.URL.Path, "/upload") {
		limit = cfg.Media.MaxUploadBytes
	}
	size := r.ContentLength
	if size < 0 || size > limit {
		size = limit // chunked, or larger than will be read anyway
	}
	return cfg.Server.HTTP.ReadBodyTimeout + time.Duration(size/minBodyRate)*time.Second
}
