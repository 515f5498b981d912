package httputil

import (
	"net/http"
	"strings"
)

// AccessToken reads the Authorization header, falling back to the
// deprecated access_token query parameter that older clients still send.
func AccessToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}
