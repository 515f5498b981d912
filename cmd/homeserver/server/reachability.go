package server

import (
	"net"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// unreachableName reports whether no other server on the internet can reach
// a server of this name (the default matrix.local, localhost, .local and
// .localhost names, loopback addresses): the server works locally, but
// federation needs a name others can resolve.
func unreachableName(name string) bool {
	host, _, ok := spec.ParseAndValidateServerName(spec.ServerName(name))
	if !ok {
		return true
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback() || ip.IsUnspecified()
	}
	return host == "localhost" || strings.HasSuffix(host, ".localhost") || strings.HasSuffix(host, ".local") ||
		strings.HasSuffix(host, ".internal") || strings.HasSuffix(host, ".invalid") || strings.HasSuffix(host, ".test")
}

// federationHint is said once at start when other servers cannot reach
// this one by its name.
const federationHint = "other homeservers cannot reach this server by its name, so it works on its own but cannot " +
	"federate: set server.server_name (MATRIX_SERVER_NAME) to a domain you control, before users exist, and make " +
	"the domain reach this server on port 443 through a tunnel or proxy, delegating with server.well_known_server " +
	"(\"<public host>:443\") if the domain's web server is elsewhere; see README, Federation"
