package appservice

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"matrixhs/internal/accounts"
	"matrixhs/internal/ephemeral"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// Options tune the appservice service; zero values take the defaults.
type Options struct {
	ServerName string
	// InitialBackoff is the wait after a failed transaction; it doubles
	// with each further failure up to MaxBackoff.
	InitialBackoff time.Duration // default 1s
	MaxBackoff     time.Duration // default 60s
	// RequestTimeout bounds one request to an appservice.
	RequestTimeout time.Duration // default 30s
	// HTTPClient reaches the appservices (default: a plain client; bridges
	// run on loopback and private addresses, which are allowed).
	HTTPClient *http.Client
}

func (o Options) withDefaults() Options {
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 60 * time.Second
	}
	o.MaxBackoff = max(o.MaxBackoff, o.InitialBackoff)
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second,
			ResponseHeaderTimeout: o.RequestTimeout,
		}}
	}
	return o
}

// Service holds the registered appservices, authenticates their requests
// and delivers their transactions.
type Service struct {
	db       *storage.DB
	accounts *accounts.Service
	log      logrus.FieldLogger
	opts     Options

	regs atomic.Pointer[[]*Registration]

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	started bool
	senders map[string]*sender

	// eph and changes carry typing and presence changes (ephemeral.go;
	// nil when no appservice asked for ephemeral data).
	eph     *ephemeral.Service
	changes chan change
}

// New builds the service for regs (see Load); Start starts delivery.
func New(db *storage.DB, acc *accounts.Service, regs []*Registration, log logrus.FieldLogger, opts Options) *Service {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{db: db, accounts: acc, log: log.WithField("component", "appservice"), opts: opts,
		ctx: ctx, cancel: cancel, senders: map[string]*sender{}}
	s.regs.Store(&regs)
	return s
}

// All lists the registered appservices.
func (s *Service) All() []*Registration {
	if s == nil {
		return nil
	}
	return *s.regs.Load()
}

// ByID finds a registered appservice.
func (s *Service) ByID(id string) *Registration {
	for _, r := range s.All() {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// byASToken finds the appservice of an as_token (in constant time per
// registration).
func (s *Service) byASToken(token string) *Registration {
	var found *Registration
	for _, r := range s.All() {
		if subtle.ConstantTimeCompare([]byte(r.ASToken), []byte(token)) == 1 {
			found = r
		}
	}
	return found
}

// ExclusiveUser is the appservice claiming userID exclusively (nil: none).
func (s *Service) ExclusiveUser(userID string) *Registration {
	for _, r := range s.All() {
		if r.IsExclusiveUser(userID) {
			return r
		}
	}
	return nil
}

// ExclusiveAlias is the appservice claiming alias exclusively (nil: none).
func (s *Service) ExclusiveAlias(alias string) *Registration {
	for _, r := range s.All() {
		if r.IsExclusiveAlias(alias) {
			return r
		}
	}
	return nil
}

// Prepare creates the accounts of the appservices' senders (as Synapse
// does at start) and records each appservice for delivery.
func (s *Service) Prepare(ctx context.Context) error { return s.prepare(ctx, s.All()) }

// Reload replaces the registrations with the files of paths, checked
// together as at start (on error the registrations in force stay), and
// restarts delivery with them: the transaction in flight of an appservice
// that stays is sent again under its ID.
func (s *Service) Reload(ctx context.Context, paths []string) error {
	regs, err := Load(paths, s.opts.ServerName)
	if err != nil {
		return err
	}
	if err := s.prepare(ctx, regs); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		s.stopSenders()
	}
	s.regs.Store(&regs)
	if s.started && s.ctx.Err() == nil {
		s.startSenders()
	}
	ids := make([]string, len(regs))
	for i, r := range regs {
		ids[i] = r.ID
	}
	s.log.WithField("appservices", ids).Info("appservice registrations reloaded")
	return nil
}

func (s *Service) prepare(ctx context.Context, regs []*Registration) error {
	pos := s.db.StreamPosition()
	for _, r := range regs {
		if _, err := s.db.Account(ctx, r.SenderID); errors.Is(err, storage.ErrNotFound) {
			_, err := s.accounts.Register(ctx, accounts.Registration{Localpart: r.SenderLocalpart, NoPassword: true, InhibitLogin: true})
			if err != nil && !errors.Is(err, accounts.ErrUserInUse) {
				return fmt.Errorf("appservice %s: creating its sender %s: %w", r.ID, r.SenderID, err)
			}
		} else if err != nil {
			return err
		}
		if err := s.db.Write(ctx, func(tx *storage.Tx) error { return tx.EnsureAppService(ctx, r.ID, pos) }); err != nil {
			return err
		}
	}
	return nil
}

// Device masquerading query parameters: the spec's and MSC3202's.
const (
	paramDeviceID        = "device_id"
	paramMSC3202DeviceID = "org.matrix.msc3202.device_id"
)

// AuthenticateAppService resolves an as_token to the session of the user
// (and device) the request acts as: the user_id parameter when it is in
// the appservice's namespace, else its sender. ok is false when token is
// no appservice's.
func (s *Service) AuthenticateAppService(ctx context.Context, token string, q url.Values) (*accounts.Session, bool, error) {
	r := s.byASToken(token)
	if r == nil {
		return nil, false, nil
	}
	userID := r.SenderID
	if u := q.Get("user_id"); u != "" && u != r.SenderID {
		if !r.IsUserInNamespace(u) {
			return nil, true, httputil.Forbidden("Application service cannot masquerade as this user (%s).", u)
		}
		if _, err := s.db.Account(ctx, u); errors.Is(err, storage.ErrNotFound) {
			return nil, true, httputil.Forbidden("Application service has not registered this user (%s)", u)
		} else if err != nil {
			return nil, true, err
		}
		userID = u
	}
	sess := &accounts.Session{UserID: userID, AppServiceID: r.ID}
	dev := q.Get(paramMSC3202DeviceID)
	if dev == "" {
		dev = q.Get(paramDeviceID)
	}
	if dev != "" {
		if _, err := s.db.Device(ctx, userID, dev); errors.Is(err, storage.ErrNotFound) {
			return nil, true, &httputil.Error{Status: http.StatusBadRequest, Code: "M_FORBIDDEN", Msg: "Application service trying to use a device that doesn't exist."}
		} else if err != nil {
			return nil, true, err
		}
		sess.DeviceID = dev
	}
	return sess, true, nil
}

// Caller is the appservice whose as_token authenticated the request's
// session (nil: a user's own token).
func (s *Service) Caller(sess *accounts.Session) *Registration {
	if sess == nil || sess.AppServiceID == "" {
		return nil
	}
	return s.ByID(sess.AppServiceID)
}
