package httputil

import (
	"net/http"
	"net/url"

	"github.com/gorilla/mux"
)

// Router is the server's one route table. The server builds it, every API
// registers its endpoints on it (under the prefixes below), and the server
// wraps it in the outer middleware (Outer, WithClientAddress). Identifiers
// in paths are checked on every route (pathids.go); unknown paths and wrong
// methods are answered M_UNRECOGNIZED, whichever API they resemble.
type Router struct{ r *mux.Router }

// NewRouter returns an empty route table. Routes match the encoded path,
// uncleaned, so IDs may contain '/' (as %2F); PathVar decodes them.
func NewRouter() *Router {
	r := mux.NewRouter().SkipClean(true).UseEncodedPath()
	r.NotFoundHandler = Handler(func(*http.Request) (any, error) {
		return nil, Unrecognized("Unrecognized request")
	})
	r.MethodNotAllowedHandler = Handler(func(*http.Request) (any, error) {
		return nil, MethodNotAllowed("Method not allowed for this endpoint")
	})
	return &Router{r: r}
}

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) { rt.r.ServeHTTP(w, r) }

// ClientPrefixes are the client API's versioned prefixes: v3, and r0 for
// older SDKs that still call it.
var ClientPrefixes = []string{"/_matrix/client/v3", "/_matrix/client/r0"}

// Client registers an endpoint under /_matrix/client/{v3,r0}.
func (rt *Router) Client(method, path string, h http.Handler) {
	h = checkPathIDs(path, h)
	for _, p := range ClientPrefixes {
		rt.r.Handle(p+path, h).Methods(method)
	}
}

// V1 registers an endpoint that only exists under /_matrix/client/v1.
func (rt *Router) V1(method, path string, h http.Handler) {
	rt.Handle("/_matrix/client/v1"+path, h, method)
}

// Exact registers a full path for one method.
func (rt *Router) Exact(method, path string, h http.Handler) { rt.Handle(path, h, method) }

// Handle registers a full path for the given methods.
func (rt *Router) Handle(path string, h http.Handler, methods ...string) {
	rt.r.Handle(path, checkPathIDs(path, h)).Methods(methods...)
}

// Route is one entry of a route table: a method and a path template
// ({name} or {name:regexp} for path variables).
type Route struct{ Method, Path string }

// Routes lists the table's routes, in registration order (for tests and
// tools).
func (rt *Router) Routes() []Route {
	var out []Route
	_ = rt.r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := route.GetPathTemplate()
		if err != nil {
			return nil
		}
		methods, _ := route.GetMethods()
		for _, m := range methods {
			out = append(out, Route{Method: m, Path: path})
		}
		return nil
	})
	return out
}

// PathVar returns a decoded path variable ("" when the route has none of
// that name).
func PathVar(r *http.Request, name string) string {
	v := mux.Vars(r)[name]
	if d, err := url.PathUnescape(v); err == nil {
		return d
	}
	return v
}

// OptionalPathVar returns a decoded path variable and whether the matched
// route has it.
func OptionalPathVar(r *http.Request, name string) (string, bool) {
	if _, ok := mux.Vars(r)[name]; !ok {
		return "", false
	}
	return PathVar(r, name), true
}
