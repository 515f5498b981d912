package clientapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
)

// User-interactive authentication stage types.
const (
	stagePassword          = "m.login.password"
	stageDummy             = "m.login.dummy"
	stageRegistrationToken = "m.login.registration_token"
)

const uiaSessionLifetime = 15 * time.Minute

// uiaSessions tracks user-interactive auth sessions in memory: they live for
// minutes and a restart simply makes the client start over.
type uiaSessions struct {
	mu       sync.Mutex
	sessions map[string]*uiaSession
	now      func() time.Time
}

type uiaSession struct {
	completed []string
	expires   time.Time
	// op is the method and path the session was started for: a session
	// cannot authorise a different operation.
	op string
	// regToken is the registration token a m.login.registration_token stage accepted.
	regToken string
}

func newUIASessions() *uiaSessions {
	return &uiaSessions{sessions: make(map[string]*uiaSession), now: time.Now}
}

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
}

// uiaResult is a completed authentication.
type uiaResult struct {
	regToken string
}

func (u *uiaSessions) create(op string) (string, *uiaSession) {
	id := accounts.NewDeviceID() + accounts.NewDeviceID()
	s := &uiaSession{expires: u.now().Add(uiaSessionLifetime), op: op}
	u.sessions[id] = s
	// Expired sessions are swept on creation; there are few of them.
	for k, v := range u.sessions {
		if u.now().After(v.expires) {
			delete(u.sessions, k)
		}
	}
	return id, s
}

// check runs one UIA step. It returns a result when a flow is complete, and
// otherwise the 401 (or stage error) the client must see.
func (a *API) checkUIA(r *http.Request, auth *uiaAuth, req uiaRequest) (*uiaResult, error) {
	u := a.uia
	op := r.Method + " " + r.URL.Path
	u.mu.Lock()
	var id string
	var sess *uiaSession
	if auth != nil && auth.Session != "" {
		s, ok := u.sessions[auth.Session]
		if !ok || u.now().After(s.expires) {
			u.mu.Unlock()
			return nil, httputil.Unknown("unknown or expired UIA session")
		}
		if s.op != op {
			u.mu.Unlock()
			return nil, httputil.Forbidden("Requested operation has changed during the UI authentication session")
		}
		id, sess = auth.Session, s
	} else {
		id, sess = u.create(op)
	}
	// Always a list: clients (and Sytest) expect "completed" on every challenge.
	completed := append([]string{}, sess.completed...)
	u.mu.Unlock()

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
		user := auth.User
		if len(auth.Identifier) > 0 {
			var ident loginIdentifier
			if err := json.Unmarshal(auth.Identifier, &ident); err != nil || ident.Type != "m.id.user" {
				return nil, challenge(httputil.Unknown("only m.id.user identifiers are supported"))
			}
			user = ident.User
		}
		if user != "" {
			// Another account's credentials never authorise this request: a
			// plain 403 (as Synapse and Complement expect), and no password
			// check, so a stolen token is no oracle for other passwords.
			local, err := a.accounts.ParseLocalUser(user)
			if err != nil || a.accounts.UserID(local) != req.userID {
				return nil, httputil.Forbidden("you can only authenticate as yourself")
			}
		}
		if _, err := a.accounts.CheckPassword(r.Context(), req.userID, auth.Password); err != nil {
			return nil, challenge(httputil.Forbidden("Invalid password"))
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

	u.mu.Lock()
	defer u.mu.Unlock()
	if !slices.Contains(sess.completed, auth.Type) {
		sess.completed = append(sess.completed, auth.Type)
	}
	if regToken != "" {
		sess.regToken = regToken
	}
	completed = append([]string{}, sess.completed...)
	for _, flow := range req.flows {
		if flowDone(flow, completed) {
			delete(u.sessions, id)
			return &uiaResult{regToken: sess.regToken}, nil
		}
	}
	return nil, challenge(nil)
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
