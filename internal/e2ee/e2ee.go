// Package e2ee is the end-to-end encryption key service: device, one-time
// and fallback keys, cross-signing keys and signatures, device-list and
// key-count changes, and to-device messages. The client API's handlers
// parse requests and call it; sync reads what it delivers through it.
//
// Across servers (through a Remote, federationapi/e2eefed): other servers'
// queries and claims about local users are answered (QueryKeysForServer,
// ClaimKeysForServer, UserDevices); local clients' queries and claims of
// other servers' users go to those servers (remote.go), whose users'
// device lists are cached while a room is shared (devicelists.go); local
// device changes are published to the servers sharing a room with their
// user (publish.go); to-device messages go both ways (todevice.go).
//
// The service knows nothing of HTTP: its refusals are *Error values of the
// kinds below, which internal/matrixerr maps to Matrix errors.
package e2ee

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"matrixhs/storage"
)

// The kinds of refusal; every refusal is an *Error wrapping one of them.
var (
	// ErrMalformed: keys or signed objects that do not have the shape the
	// spec gives them (M_BAD_JSON).
	ErrMalformed = errors.New("malformed keys")
	// ErrInvalid: a well-formed value that cannot be accepted, such as a
	// key ID already used with other content (M_INVALID_PARAM).
	ErrInvalid = errors.New("invalid keys")
	// ErrMissing: a required part of the request is absent (M_MISSING_PARAM).
	ErrMissing = errors.New("missing parameter")
	// ErrBadSignature: a signature that does not verify (M_INVALID_SIGNATURE).
	ErrBadSignature = errors.New("invalid signature")
	// ErrKeyIDTaken: a cross-signing public key that is also one of the
	// user's device IDs (M_FORBIDDEN).
	ErrKeyIDTaken = errors.New("public key used as a device ID")
	// ErrDeviceGone: the uploading device was deleted meanwhile (its
	// access token is gone too: M_UNKNOWN_TOKEN).
	ErrDeviceGone = errors.New("device was deleted")
	// ErrNotLocal: a user of another server where a local one is needed.
	ErrNotLocal = errors.New("not a local user")
	// ErrTooLarge: a to-device message beyond MaxToDeviceContentBytes
	// (M_TOO_LARGE).
	ErrTooLarge = errors.New("too large")
)

// Error is a refusal: its kind and a message for the user.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func refuse(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Device names a device of a local user: who uploads, claims or sends.
type Device struct{ UserID, DeviceID string }

// Remote reaches other servers (federationapi/e2eefed). Without one,
// every other server is unreachable: queries and claims report it in their
// failures, to-device messages for its users are dropped, and nothing is
// published.
type Remote interface {
	// QueryKeys asks server for its users' keys (POST /user/keys/query):
	// user → devices (none: all).
	QueryKeys(ctx context.Context, server string, deviceKeys map[string][]string) (*RemoteKeys, error)
	// ClaimKeys claims one-time keys of server's users (POST
	// /user/keys/claim): user → device → algorithm.
	ClaimKeys(ctx context.Context, server string, claims map[string]map[string]string) (OneTimeKeys, error)
	// UserDevices asks server for one of its users' whole device list
	// (GET /user/devices/{userId}).
	UserDevices(ctx context.Context, server, userID string) (*RemoteDeviceList, error)
	// QueueEDU queues an EDU for destinations as part of the write tx;
	// it leaves once the write commits.
	QueueEDU(ctx context.Context, tx *storage.Tx, destinations []string, eduType string, content []byte) error
}

// Options configure the service.
type Options struct {
	ServerName string
	Remote     Remote // nil: no federation
	Log        logrus.FieldLogger
	Now        func() time.Time // nil: time.Now
}

// Service is the key service.
type Service struct {
	db         *storage.DB
	serverName string
	remote     Remote
	log        logrus.FieldLogger
	now        func() time.Time

	// userLocks serialise the changes to one remote user's cached device
	// list (EDUs, resyncs, forgetting), striped by user ID.
	userLocks [64]sync.Mutex
	// bg is the background work of federation (publish.go).
	bg background
	// joinNotices are the remote users whose list is to be fetched for the
	// first time because their server announced it on a join (see
	// joinNoticeField): that fetch changes nothing local users were not
	// told.
	joinNotices joinNoticeSet
}

// New returns the service over db (Start starts its background work).
func New(db *storage.DB, opts Options) *Service {
	s := &Service{db: db, serverName: opts.ServerName, remote: opts.Remote, log: opts.Log, now: opts.Now}
	s.bg.resync = make(chan string, resyncQueue)
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = logrus.StandardLogger()
	}
	return s
}

// serverOf is the server name of a user ID ("" if it is not one).
func serverOf(userID string) string {
	if !strings.HasPrefix(userID, "@") {
		return ""
	}
	_, server, ok := strings.Cut(userID, ":")
	if !ok {
		return ""
	}
	return server
}

func (s *Service) isLocalUser(userID string) bool {
	return serverOf(userID) == s.serverName
}

// Failure is a server's entry in the failures of a query or claim.
type Failure struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
}

// unreachable is the failure for a server we cannot reach.
func unreachable(err error) Failure {
	if err == nil {
		return Failure{Status: http.StatusServiceUnavailable, Message: "federation is not supported by this server"}
	}
	return Failure{Status: http.StatusServiceUnavailable, Message: err.Error()}
}

// decodeEd25519 decodes an (unpadded) base64 ed25519 public key.
func decodeEd25519(s string) (ed25519.PublicKey, bool) {
	var b spec.Base64Bytes
	if err := b.Decode(s); err != nil || len(b) != ed25519.PublicKeySize {
		return nil, false
	}
	return ed25519.PublicKey(b), true
}

// verifySigned checks that signer signed obj (canonical JSON without
// signatures and unsigned) with the ed25519 key keyID.
func verifySigned(obj []byte, signer, keyID string, pub ed25519.PublicKey) bool {
	return gomatrixserverlib.VerifyJSON(signer, gomatrixserverlib.KeyID(keyID), pub, obj) == nil
}

// canonicalWithout returns the canonical JSON of an object without the
// named top-level fields.
func canonicalWithout(raw []byte, drop ...string) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, refuse(ErrMalformed, "expected a JSON object")
	}
	for _, f := range drop {
		delete(obj, f)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, refuse(ErrMalformed, "bad JSON object: %v", err)
	}
	return gomatrixserverlib.CanonicalJSON(b)
}

// sameSignedContent reports whether two signed objects are equal apart from
// their signatures and unsigned data.
func sameSignedContent(a, b []byte) bool {
	ca, err1 := canonicalWithout(a, "signatures", "unsigned")
	cb, err2 := canonicalWithout(b, "signatures", "unsigned")
	return err1 == nil && err2 == nil && string(ca) == string(cb)
}

// isJSONNull reports an absent or null JSON value.
func isJSONNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}
