package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
)

// User-interactive authentication stage types.
const (
	stagePassword          = "m.login.password"
	stageDummy             = "m.login.dummy"
	stageRegistrationToken = "m.login.registration_token"
)

// uiaAuth is the "auth" dictionary of a request.
type uiaAuth struct {
	Type       string          `json:"type"`
	Session    string          `json:"session"`
	Password   string          `json:"password"`
	Identifier json.RawMessage `json:"identifier"`
	User       string          `json:"user"`
	Token      string          `json:"token"`
}

// uiaRequest describes what an endpoint demands.
type uiaRequest struct {
	flows [][]string
	// userID is the user who must prove themselves with m.login.password;
	// empty for registration.
	userID string
	// checkRegToken validates a registration token for that stage.
	checkRegToken func(ctx context.Context, token string) (bool, error)
	// newSession, when set, is asked before a session is started (a rate
	// limit on sign-ups).
	newSession func() error
}

// uiaResult is a completed authentication.
type uiaResult struct {
	regToken string
}

// uiaSession finds the request's session, or starts one (after req.newSession
// allows it), and returns its ID and the stages completed so far.
func (a *API) uiaSession(r *http.Request, auth *uiaAuth, req uiaRequest) (string, []string, error) {
	u := a.uia
	op := r.Method + " " + r.URL.Path
	if auth != nil && auth.Session != "" {
		u.mu.Lock()
		defer u.mu.Unlock()
		s := u.get(auth.Session, req.userID)
		if s == nil {
			return "", nil, httputil.Unknown("unknown or expired UIA session")
		}
		if s.op != op {
			return "", nil, httputil.Forbidden("Requested operation has changed during the UI authentication session")
		}
		// Always a list: clients (and Sytest) expect "completed" on every challenge.
		return s.id, append([]string{}, s.completed...), nil
	}
	if req.newSession != nil {
		if err := req.newSession(); err != nil {
			return "", nil, err
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.create(op, req.userID).id, []string{}, nil
}

// checkUIA runs one UIA step. It returns a result when a flow is complete,
// and otherwise the 401 (or stage error) the client must see.
func (a *API) checkUIA(r *http.Request, auth *uiaAuth, req uiaRequest) (*uiaResult, error) {
	id, completed, err := a.uiaSession(r, auth, req)
	if err != nil {
		return nil, err
	}
	challenge := func(stageErr *httputil.Error) *httputil.Error {
		params := map[string]any{}
		body := map[string]any{"flows": flowsJSON(req.flows), "params": params, "session": id, "completed": completed}
		e := &httputil.Error{Status: http.StatusUnauthorized, Extra: body}
		if stageErr != nil {
			e.Code, e.Msg = stageErr.Code, stageErr.Msg
		}
		return e
	}
	if auth == nil || auth.Type == "" {
		return nil, challenge(nil)
	}
	if !stageAllowed(req.flows, completed, auth.Type) {
		return nil, challenge(httputil.Unknown("auth type %q is not part of an allowed flow", auth.Type))
	}
	var regToken string
	switch auth.Type {
	case stageDummy:
	case stagePassword:
		if err := a.uiaPassword(r, auth, req.userID); err != nil {
			// Stage failures (401) are challenges; 403 and 429 are not.
			var he *httputil.Error
			if errors.As(err, &he) && he.Status == http.StatusUnauthorized {
				return nil, challenge(he)
			}
			return nil, err
		}
	case stageRegistrationToken:
		ok, err := req.checkRegToken(r.Context(), auth.Token)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, challenge(httputil.Forbidden("registration token is unknown, used up or expired"))
		}
		regToken = auth.Token
	default:
		return nil, challenge(httputil.Unknown("unsupported auth type %q", auth.Type))
	}
	return a.completeStage(id, req, auth.Type, regToken, challenge)
}

// uiaPassword checks the m.login.password stage for userID, counting
// failures with the login limiter (per account and per address), so a
// stolen access token is no oracle for the password. A wrong password is a
// 401 M_FORBIDDEN (turned into a challenge by the caller); other errors are
// returned as they are.
func (a *API) uiaPassword(r *http.Request, auth *uiaAuth, userID string) error {
	user := auth.User
	if len(auth.Identifier) > 0 {
		var ident loginIdentifier
		if err := json.Unmarshal(auth.Identifier, &ident); err != nil || ident.Type != "m.id.user" {
			return &httputil.Error{Status: http.StatusUnauthorized, Code: "M_UNKNOWN", Msg: "only m.id.user identifiers are supported"}
		}
		user = ident.User
	}
	if user != "" {
		// Another account's credentials never authorise this request: a
		// plain 403 (as Synapse and Complement expect), and no password
		// check, so a stolen token is no oracle for other passwords.
		local, err := a.accounts.ParseLocalUser(user)
		if err != nil || a.accounts.UserID(local) != userID {
			return httputil.Forbidden("you can only authenticate as yourself")
		}
	}
	keys := keysFor(r, userID)
	if err := a.logins.check(keys); err != nil {
		return err
	}
	if _, err := a.accounts.CheckPassword(r.Context(), userID, auth.Password); err != nil {
		if !errors.Is(err, accounts.ErrBadLogin) {
			return err
		}
		a.logins.failed(keys)
		return &httputil.Error{Status: http.StatusUnauthorized, Code: "M_FORBIDDEN", Msg: "Invalid password"}
	}
	return nil
}

// completeStage records a passed stage and ends the session when a flow is
// complete.
func (a *API) completeStage(id string, req uiaRequest, stage, regToken string, challenge func(*httputil.Error) *httputil.Error) (*uiaResult, error) {
	u := a.uia
	u.mu.Lock()
	defer u.mu.Unlock()
	sess := u.get(id, req.userID)
	if sess == nil {
		return nil, httputil.Unknown("unknown or expired UIA session")
	}
	if !slices.Contains(sess.completed, stage) {
		sess.completed = append(sess.completed, stage)
	}
	if regToken != "" {
		sess.regToken = regToken
	}
	for _, flow := range req.flows {
		if flowDone(flow, sess.completed) {
			u.remove(sess)
			return &uiaResult{regToken: sess.regToken}, nil
		}
	}
	completed := append([]string{}, sess.completed...)
	e := challenge(nil)
	e.Extra["completed"] = completed
	return nil, e
}

func flowsJSON(flows [][]string) []map[string][]string {
	out := make([]map[string][]string, len(flows))
	for i, f := range flows {
		out[i] = map[string][]string{"stages": f}
	}
	return out
}

// stageAllowed reports whether typ is the next stage of some flow that is
// consistent with what was completed.
func stageAllowed(flows [][]string, completed []string, typ string) bool {
	for _, f := range flows {
		if slices.Contains(f, typ) {
			return true
		}
	}
	return false
}

func flowDone(flow, completed []string) bool {
	for _, st := range flow {
		if !slices.Contains(completed, st) {
			return false
		}
	}
	return true
}
