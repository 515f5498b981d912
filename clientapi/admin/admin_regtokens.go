package admin

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// Registration tokens through the Synapse admin API (the CLI's
// registration-token command does the same offline).

const regTokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-"

func validRegToken(t string) bool {
	if t == "" || len(t) > 64 {
		return false
	}
	for _, c := range []byte(t) {
		if strings.IndexByte(regTokenAlphabet, c) < 0 {
			return false
		}
	}
	return true
}

func adminRegToken(t *storage.RegistrationToken) map[string]any {
	return map[string]any{"token": t.Token, "uses_allowed": nullIfZeroInt(t.UsesAllowed), "pending": 0,
		"completed": t.Completed, "expiry_time": nullIfZeroInt(t.ExpiryTS)}
}

func nullIfZeroInt(n int64) any {
	if n == 0 {
		return nil
	}
	return n
}

// adminListRegTokens serves GET /_synapse/admin/v1/registration_tokens.
func (a *API) adminListRegTokens(r *http.Request, _ *accounts.Session) (any, error) {
	all, err := a.db.RegistrationTokens(r.Context())
	if err != nil {
		return nil, err
	}
	valid := r.URL.Query().Get("valid")
	now := a.accounts.Now().UnixMilli()
	out := []any{}
	for i := range all {
		if valid != "" && (valid == "true") != all[i].Usable(now) {
			continue
		}
		out = append(out, adminRegToken(&all[i]))
	}
	return map[string]any{"registration_tokens": out}, nil
}

func (a *API) adminRegTokenByPath(r *http.Request) (*storage.RegistrationToken, error) {
	t, err := a.db.RegistrationToken(r.Context(), httputil.PathVar(r, "token"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("No such registration token")
	}
	return t, err
}

// adminGetRegToken serves GET /_synapse/admin/v1/registration_tokens/{token}.
func (a *API) adminGetRegToken(r *http.Request, _ *accounts.Session) (any, error) {
	t, err := a.adminRegTokenByPath(r)
	if err != nil {
		return nil, err
	}
	return adminRegToken(t), nil
}

// regTokenLimits reads uses_allowed and expiry_time: absent leaves *uses or
// *expiry as they are, null removes the limit.
func regTokenLimits(body map[string]json.RawMessage, uses, expiry *int64) error {
	for key, dst := range map[string]*int64{"uses_allowed": uses, "expiry_time": expiry} {
		raw, ok := body[key]
		if !ok {
			continue
		}
		if string(raw) == "null" {
			*dst = 0
			continue
		}
		var n int64
		if json.Unmarshal(raw, &n) != nil || n < 0 {
			return httputil.InvalidParam("%s must be a non-negative integer or null", key)
		}
		*dst = n
	}
	return nil
}

// adminNewRegToken serves POST /_synapse/admin/v1/registration_tokens/new.
func (a *API) adminNewRegToken(r *http.Request, _ *accounts.Session) (any, error) {
	var body map[string]json.RawMessage
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	now := a.accounts.Now().UnixMilli()
	t := storage.RegistrationToken{CreatedTS: now}
	if err := regTokenLimits(body, &t.UsesAllowed, &t.ExpiryTS); err != nil {
		return nil, err
	}
	if t.ExpiryTS != 0 && t.ExpiryTS <= now {
		return nil, httputil.InvalidParam("expiry_time must be in the future")
	}
	if raw, ok := body["token"]; ok {
		if json.Unmarshal(raw, &t.Token) != nil || !validRegToken(t.Token) {
			return nil, httputil.InvalidParam("token must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', '~' and '-'")
		}
	} else {
		length := 16
		if raw, ok := body["length"]; ok {
			if json.Unmarshal(raw, &length) != nil || length < 1 || length > 64 {
				return nil, httputil.InvalidParam("length must be an integer from 1 to 64")
			}
		}
		b := make([]byte, length)
		rand.Read(b)
		for i := range b {
			b[i] = regTokenAlphabet[int(b[i])%62] // letters and digits
		}
		t.Token = string(b)
	}
	err := a.db.Write(r.Context(), func(tx *storage.Tx) error { return tx.InsertRegistrationToken(r.Context(), t) })
	if errors.Is(err, storage.ErrExists) {
		return nil, httputil.InvalidParam("Token already exists")
	}
	if err != nil {
		return nil, err
	}
	return adminRegToken(&t), nil
}

// adminUpdateRegToken serves PUT /_synapse/admin/v1/registration_tokens/{token}.
func (a *API) adminUpdateRegToken(r *http.Request, _ *accounts.Session) (any, error) {
	var body map[string]json.RawMessage
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	t, err := a.adminRegTokenByPath(r)
	if err != nil {
		return nil, err
	}
	if err := regTokenLimits(body, &t.UsesAllowed, &t.ExpiryTS); err != nil {
		return nil, err
	}
	err = a.db.Write(r.Context(), func(tx *storage.Tx) error {
		return tx.SetRegistrationTokenLimits(r.Context(), t.Token, t.UsesAllowed, t.ExpiryTS)
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("No such registration token")
	}
	if err != nil {
		return nil, err
	}
	return adminRegToken(t), nil
}

// adminDeleteRegToken serves DELETE /_synapse/admin/v1/registration_tokens/{token}.
func (a *API) adminDeleteRegToken(r *http.Request, _ *accounts.Session) (any, error) {
	err := a.db.Write(r.Context(), func(tx *storage.Tx) error {
		return tx.DeleteRegistrationToken(r.Context(), httputil.PathVar(r, "token"))
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("No such registration token")
	}
	if err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}
