package federationapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/federationapi/fedclient"
	"matrixhs/internal/httputil"
	"matrixhs/internal/ids"
	"matrixhs/storage"
)

// Profiles across servers: GET /_matrix/federation/v1/query/profile serves
// a local user's display name and avatar to other servers; QueryProfile
// asks a user's server for theirs (the client API's profile endpoints for
// users of other servers).

// profileQueryTimeout bounds one outbound profile query: a client waits on
// it.
const profileQueryTimeout = 15 * time.Second

// profileFields are the fields a profile query may name.
var profileFields = map[string]bool{"displayname": true, "avatar_url": true}

// queryProfile serves GET /_matrix/federation/v1/query/profile: both fields
// (null when unset), or the one named by field, as Synapse answers.
func (f *API) queryProfile(r *http.Request, _ spec.ServerName) (any, error) {
	q := r.URL.Query()
	userID, field := q.Get("user_id"), q.Get("field")
	if userID == "" {
		return nil, httputil.MissingParam("user_id is required")
	}
	if err := ids.UserID(userID); err != nil {
		return nil, httputil.InvalidParam("%v", err)
	}
	if serverOfUser(userID) != f.serverName {
		return nil, httputil.InvalidParam("User is not hosted on this homeserver")
	}
	if field != "" && !profileFields[field] {
		return nil, httputil.InvalidParam("Unknown profile field %q", field)
	}
	acc, err := f.db.Account(r.Context(), userID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Profile was not found")
	}
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	if field == "" || field == "displayname" {
		out["displayname"] = nullIfEmpty(acc.DisplayName)
	}
	if field == "" || field == "avatar_url" {
		out["avatar_url"] = nullIfEmpty(acc.AvatarURL)
	}
	return out, nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// serverOfUser is the server part of a user ID.
func serverOfUser(userID string) spec.ServerName {
	_, server, _ := strings.Cut(userID, ":")
	return spec.ServerName(server)
}

// QueryProfile asks a user's server for the user's profile (field "" for
// both fields): the fields that are strings, keyed "displayname" and
// "avatar_url". The server's refusals come back as its error (a 404 for an
// unknown user, as Synapse passes it on); a server that cannot be reached
// is 502.
func (f *API) QueryProfile(ctx context.Context, userID, field string) (map[string]string, error) {
	if f.opts.Disabled {
		return nil, httputil.NotFound("Profile not found")
	}
	q := url.Values{"user_id": {userID}}
	if field != "" {
		q.Set("field", field)
	}
	ctx, cancel := context.WithTimeout(ctx, profileQueryTimeout)
	defer cancel()
	var resp map[string]any
	if err := f.Client.Do(ctx, http.MethodGet, serverOfUser(userID), "/_matrix/federation/v1/query/profile?"+q.Encode(), nil, &resp); err != nil {
		var re *fedclient.RemoteError
		if errors.As(err, &re) && re.Status >= 400 && re.Status < 500 && re.Errcode != "" {
			return nil, &httputil.Error{Status: re.Status, Code: re.Errcode, Msg: re.Message}
		}
		f.opts.Log.WithError(err).WithField("user_id", userID).Info("remote profile query failed")
		return nil, &httputil.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Msg: "Failed to fetch profile"}
	}
	out := map[string]string{}
	for k := range profileFields {
		if v, ok := resp[k].(string); ok && (field == "" || field == k) {
			out[k] = v
		}
	}
	return out, nil
}
