package admin

import (
	"container/list"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"matrixhs/clientapi/internal/users"
	"matrixhs/config"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
)

const (
	nonceLifetime = time.Minute
	// Anyone may ask for nonces: beyond this many live ones the oldest go.
	maxNonces = 10_000
)

// nonceStore hands out single-use nonces for shared-secret registration.
// Nonces all live equally long, so issue order is expiry order: expired
// ones leave from the front of a queue, without scanning the rest.
type nonceStore struct {
	mu     sync.Mutex
	nonces map[string]*list.Element
	order  *list.List // of nonceEntry, oldest first
}

type nonceEntry struct {
	nonce   string
	expires time.Time
}

func newNonceStore() *nonceStore {
	return &nonceStore{nonces: make(map[string]*list.Element), order: list.New()}
}

func (n *nonceStore) issue(now time.Time) (string, error) {
	nonce, err := config.RandomSecret(24)
	if err != nil {
		return "", err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for e := n.order.Front(); e != nil && (now.After(e.Value.(nonceEntry).expires) || n.order.Len() >= maxNonces); e = n.order.Front() {
		n.drop(e)
	}
	n.nonces[nonce] = n.order.PushBack(nonceEntry{nonce: nonce, expires: now.Add(nonceLifetime)})
	return nonce, nil
}

// take consumes a nonce, reporting whether it was valid.
func (n *nonceStore) take(nonce string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.nonces[nonce]
	if !ok {
		return false
	}
	n.drop(e)
	return now.Before(e.Value.(nonceEntry).expires)
}

func (n *nonceStore) drop(e *list.Element) {
	delete(n.nonces, e.Value.(nonceEntry).nonce)
	n.order.Remove(e)
}

// adminRegisterNonce serves GET /_synapse/admin/v1/register.
func (a *API) adminRegisterNonce(*http.Request) (any, error) {
	if a.cfg.Registration.SharedSecret == "" {
		return nil, httputil.Unknown("Shared secret registration is not enabled")
	}
	nonce, err := a.nonces.issue(a.accounts.Now())
	if err != nil {
		return nil, err
	}
	return map[string]string{"nonce": nonce}, nil
}

// SharedSecretMAC computes Synapse's registration MAC:
// HMAC-SHA1 over nonce, user, password and admin flag joined by NUL bytes.
func SharedSecretMAC(secret, nonce, user, password string, admin bool, userType string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(nonce))
	mac.Write([]byte{0})
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	mac.Write([]byte{0})
	if admin {
		mac.Write([]byte("admin"))
	} else {
		mac.Write([]byte("notadmin"))
	}
	if userType != "" {
		mac.Write([]byte{0})
		mac.Write([]byte(userType))
	}
	return hex.EncodeToString(mac.Sum(nil))
}

// adminRegister serves POST /_synapse/admin/v1/register.
func (a *API) adminRegister(r *http.Request) (any, error) {
	if a.cfg.Registration.SharedSecret == "" {
		return nil, httputil.Unknown("Shared secret registration is not enabled")
	}
	var req struct {
		Nonce       string  `json:"nonce"`
		Username    string  `json:"username"`
		Password    string  `json:"password"`
		DisplayName string  `json:"displayname"`
		Admin       bool    `json:"admin"`
		UserType    *string `json:"user_type"`
		MAC         string  `json:"mac"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Nonce == "" || req.Username == "" || req.Password == "" || req.MAC == "" {
		return nil, httputil.MissingParam("nonce, username, password and mac are required")
	}
	if !a.nonces.take(req.Nonce, a.accounts.Now()) {
		return nil, httputil.Unknown("unrecognised nonce")
	}
	userType := ""
	if req.UserType != nil {
		userType = *req.UserType
	}
	want := SharedSecretMAC(a.cfg.Registration.SharedSecret, req.Nonce, req.Username, req.Password, req.Admin, userType)
	if !hmac.Equal([]byte(want), []byte(req.MAC)) {
		return nil, httputil.Forbidden("HMAC incorrect")
	}
	login, err := a.accounts.Register(r.Context(), accounts.Registration{
		Localpart: users.LowerASCII(req.Username), Password: req.Password, Admin: req.Admin, DisplayName: req.DisplayName,
		Device: accounts.NewDevice{IP: httputil.ClientIP(r)},
	})
	if err != nil {
		return nil, err
	}
	return login, nil
}
