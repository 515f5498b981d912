package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"matrixhs/storage"
)

// Keys of other servers' users, as a client's /keys/query and /keys/claim
// reach them: each server is asked concurrently, within the request's
// timeout; a server that fails or does not answer in time is listed in the
// failures. The device lists of users this server shares a room with are
// cached (kept current by their servers' m.device_list_update EDUs) and
// served from the cache while it is known to be up to date; a list that is
// not is fetched whole (/user/devices) first, as Synapse does.

// Timeouts of the requests to other servers made for one query or claim.
const (
	DefaultRemoteTimeout = 10 * time.Second
	MaxRemoteTimeout     = 60 * time.Second
)

// remoteConcurrency bounds the servers asked at once for one request.
const remoteConcurrency = 10

// RemoteKeys is another server's answer to /user/keys/query, read loosely:
// each entry is checked on its own.
type RemoteKeys struct {
	DeviceKeys      map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage `json:"self_signing_keys"`
}

// RemoteDeviceList is another server's answer to /user/devices/{userId},
// read loosely.
type RemoteDeviceList struct {
	UserID         string            `json:"user_id"`
	StreamID       json.RawMessage   `json:"stream_id"`
	Devices        []json.RawMessage `json:"devices"`
	MasterKey      json.RawMessage   `json:"master_key"`
	SelfSigningKey json.RawMessage   `json:"self_signing_key"`
}

// SetRemote sets how other servers are reached (before the service serves
// requests or starts).
func (s *Service) SetRemote(r Remote) { s.remote = r }

// failureOf is a server's entry in the failures for err.
func failureOf(err error) Failure {
	var se interface{ StatusCode() int }
	status := http.StatusServiceUnavailable
	if errors.As(err, &se) && se.StatusCode() >= 400 {
		status = se.StatusCode()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusGatewayTimeout
	}
	return Failure{Status: status, Message: err.Error()}
}

// timedOut is the failure of a server that did not answer in time.
var timedOut = Failure{Status: http.StatusGatewayTimeout, Message: "timed out waiting for the server"}

// fanOut runs ask for each server concurrently (at most remoteConcurrency
// at once) and hands each result to merge, on the calling goroutine, as it
// comes; servers still running when the timeout passes (or ctx ends) are
// given to late. It never waits beyond the timeout.
func fanOut[R any](ctx context.Context, servers []string, timeout time.Duration,
	ask func(ctx context.Context, server string) R, merge func(server string, r R), late func(server string)) {
	if len(servers) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		server string
		r      R
	}
	results := make(chan result, len(servers)) // buffered: late answers never block
	sem := make(chan struct{}, remoteConcurrency)
	for _, server := range servers {
		go func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			results <- result{server, ask(ctx, server)}
		}()
	}
	pending := make(map[string]bool, len(servers))
	for _, server := range servers {
		pending[server] = true
	}
	for len(pending) > 0 {
		select {
		case res := <-results:
			delete(pending, res.server)
			merge(res.server, res.r)
		case <-ctx.Done():
			left := make([]string, 0, len(pending))
			for server := range pending {
				left = append(left, server)
			}
			sort.Strings(left)
			for _, server := range left {
				late(server)
			}
			return
		}
	}
}

// serverKeys is what one server's users' keys came to.
type serverKeys struct {
	devices             map[string]map[string]json.RawMessage
	master, selfSigning map[string]json.RawMessage
	err                 error // set: the server is a failure
}

func newServerKeys() *serverKeys {
	return &serverKeys{devices: map[string]map[string]json.RawMessage{},
		master: map[string]json.RawMessage{}, selfSigning: map[string]json.RawMessage{}}
}

// queryRemotes adds other servers' users' keys (or the servers' failures)
// to out.
func (s *Service) queryRemotes(ctx context.Context, requester string, byServer map[string]map[string][]string, timeout time.Duration, out *QueryResponse) {
	servers := sortedKeys(byServer)
	if s.remote == nil {
		for _, server := range servers {
			out.Failures[server] = unreachable(nil)
		}
		return
	}
	fanOut(ctx, servers, timeout, func(ctx context.Context, server string) *serverKeys {
		return s.queryServer(ctx, requester, server, byServer[server])
	}, func(server string, k *serverKeys) {
		for u, d := range k.devices {
			out.DeviceKeys[u] = d
		}
		for u, key := range k.master {
			out.MasterKeys[u] = key
		}
		for u, key := range k.selfSigning {
			out.SelfSigningKeys[u] = key
		}
		if k.err != nil {
			out.Failures[server] = failureOf(k.err)
		}
	}, func(server string) { out.Failures[server] = timedOut })
}

// queryServer collects the keys of one server's users: from the cache
// where it is up to date, after fetching the device lists of tracked users
// that are not, and by asking the server for the rest.
func (s *Service) queryServer(ctx context.Context, requester, server string, users map[string][]string) *serverKeys {
	out := newServerKeys()
	ask := map[string][]string{}
	for _, userID := range sortedKeys(users) {
		devices := users[userID]
		served, err := s.fromCache(ctx, requester, userID, devices, out)
		if err != nil {
			out.err = err
			return out
		}
		if served {
			continue
		}
		if len(devices) == 0 {
			tracked, err := s.db.SharesRoomWithServer(ctx, userID, s.serverName)
			if err != nil {
				out.err = err
				return out
			}
			if tracked {
				if err := s.resync(ctx, userID); err == nil {
					served, err := s.fromCache(ctx, requester, userID, nil, out)
					if err != nil {
						out.err = err
						return out
					}
					if served {
						continue
					}
				} else if ctx.Err() != nil {
					out.err = err
					return out
				}
			}
		}
		// Untracked users, single devices and failed resyncs: ask.
		ask[userID] = devices
	}
	if len(ask) == 0 {
		return out
	}
	res, err := s.remote.QueryKeys(ctx, server, ask)
	if err != nil {
		out.err = err
		return out
	}
	s.addRemoteKeys(ctx, requester, server, ask, res, out)
	return out
}

// addRemoteKeys adds what a server answered for the users asked, checked,
// with the requester's signatures of their master keys.
func (s *Service) addRemoteKeys(ctx context.Context, requester, server string, asked map[string][]string, res *RemoteKeys, out *serverKeys) {
	log := s.log.WithField("server", server)
	for userID, devices := range asked {
		if remoteUserOf(userID, server) != nil {
			continue
		}
		if raw, ok := res.DeviceKeys[userID]; ok {
			var byDevice map[string]json.RawMessage
			if err := json.Unmarshal(raw, &byDevice); err != nil {
				log.WithError(err).Debug("remote device keys ignored")
			}
			keys := map[string]json.RawMessage{}
			for deviceID, dk := range byDevice {
				if len(devices) > 0 && !containsString(devices, deviceID) {
					continue
				}
				if _, err := checkRemoteDeviceKeys(dk, userID, deviceID); err != nil {
					log.WithError(err).Debug("remote device keys ignored")
					continue
				}
				keys[deviceID] = dk
			}
			out.devices[userID] = keys
		}
		masterPub := ""
		if raw, ok := res.MasterKeys[userID]; ok {
			if _, pub, err := checkRemoteCrossSigningKey(raw, userID, "master", ""); err == nil {
				masterPub = pub
				out.master[userID] = s.withSignaturesBy(ctx, raw, userID, pub, requester)
			} else {
				log.WithError(err).Debug("remote master key ignored")
			}
		}
		if raw, ok := res.SelfSigningKeys[userID]; ok && masterPub != "" {
			if _, _, err := checkRemoteCrossSigningKey(raw, userID, "self_signing", masterPub); err == nil {
				out.selfSigning[userID] = raw
			} else {
				log.WithError(err).Debug("remote self-signing key ignored")
			}
		}
	}
}

// withSignaturesBy adds the signatures requester made of a remote user's
// master key (kept here: they are requester's business) to it.
func (s *Service) withSignaturesBy(ctx context.Context, raw json.RawMessage, userID, pub, requester string) json.RawMessage {
	if requester == "" {
		return raw
	}
	sigs, err := s.db.CrossSignatures(ctx, userID, []string{requester})
	if err != nil || len(sigs) == 0 {
		return raw
	}
	obj, err := decodeSigned(raw)
	if err != nil {
		return raw
	}
	for _, sig := range sigs {
		if sig.TargetKeyID == pub {
			obj.addSignature(sig.SignerUserID, sig.SignerKeyID, sig.Signature)
		}
	}
	return obj.marshal(nil)
}

// fromCache adds a remote user's keys from the cache to out when the cache
// is up to date: the list is fresh, this server still shares a room with
// the user (else updates would be missed), and it holds both cross-signing
// keys or neither.
func (s *Service) fromCache(ctx context.Context, requester, userID string, devices []string, out *serverKeys) (bool, error) {
	state, err := s.db.RemoteDeviceListState(ctx, userID)
	if err != nil || !state.Cached || state.Stale {
		return false, err
	}
	if tracked, err := s.db.SharesRoomWithServer(ctx, userID, s.serverName); err != nil || !tracked {
		return false, err
	}
	cs, err := s.crossSigningFor(ctx, requester, userID)
	if err != nil {
		return false, err
	}
	if (cs.master == nil) != (cs.selfSigning == nil) {
		return false, nil
	}
	cached, err := s.db.RemoteDevices(ctx, userID, devices)
	if err != nil {
		return false, err
	}
	keys := map[string]json.RawMessage{}
	for _, d := range cached {
		if d.KeyJSON == nil {
			continue
		}
		obj, err := decodeSigned(d.KeyJSON)
		if err != nil {
			return false, fmt.Errorf("cached keys of %s %s: %w", userID, d.DeviceID, err)
		}
		var unsigned map[string]any
		if d.DisplayName != "" {
			unsigned = map[string]any{"device_display_name": d.DisplayName}
		}
		keys[d.DeviceID] = obj.marshal(unsigned)
	}
	out.devices[userID] = keys
	if cs.master != nil {
		out.master[userID] = cs.master
		out.selfSigning[userID] = cs.selfSigning
	}
	return true, nil
}

// resync fetches a tracked remote user's whole device list from their
// server and caches it (unless another resync did meanwhile). A failure
// leaves the list stale, to be fetched again.
func (s *Service) resync(ctx context.Context, userID string) error {
	if s.remote == nil {
		return errors.New("federation is not supported by this server")
	}
	mu := s.userLock(userID)
	mu.Lock()
	defer mu.Unlock()
	state, err := s.db.RemoteDeviceListState(ctx, userID)
	if err != nil {
		return err
	}
	if state.Cached && !state.Stale {
		return nil // done meanwhile
	}
	server := serverOf(userID)
	res, err := s.remote.UserDevices(ctx, server, userID)
	if err == nil {
		// A first fetch after a join notice is not news (joinNoticeField);
		// an entry at stream ID 0 was made stale before any list came.
		noticed := s.joinNotices.take(userID)
		quiet := noticed && (!state.Cached || state.StreamID == 0)
		err = s.storeDeviceList(ctx, server, userID, res, !quiet)
	}
	if err != nil {
		s.log.WithError(err).WithField("user_id", userID).Debug("fetching a remote device list failed")
		wctx := context.WithoutCancel(ctx)
		if werr := s.db.Write(wctx, func(tx *storage.Tx) error {
			return tx.MarkRemoteDeviceListStale(wctx, userID)
		}); werr != nil {
			s.log.WithError(werr).Warn("marking a remote device list stale")
		}
		return fmt.Errorf("fetching the devices of %s: %w", userID, err)
	}
	return nil
}

// storeDeviceList checks a server's /user/devices answer and caches it
// whole. The user's device list changes for local users (unless not tell,
// see joinNoticeField): a list that was not known up to date may have
// missed anything.
func (s *Service) storeDeviceList(ctx context.Context, server, userID string, res *RemoteDeviceList, tell bool) error {
	if res.UserID != userID {
		return fmt.Errorf("answer for %q, not %s", res.UserID, userID)
	}
	streamID, ok := parseStreamID(res.StreamID)
	if !ok {
		return errors.New("answer without a valid stream_id")
	}
	if len(res.Devices) > maxRemoteDevices {
		return fmt.Errorf("%d devices: more than this server keeps", len(res.Devices))
	}
	devices := make([]storage.RemoteDevice, 0, len(res.Devices))
	for _, raw := range res.Devices {
		d, err := parseRemoteDevice(raw, userID)
		if err != nil {
			s.log.WithError(err).WithField("server", server).Debug("remote device ignored")
			continue
		}
		devices = append(devices, d)
	}
	cs, err := parseRemoteCrossSigning(userID, res.MasterKey, res.SelfSigningKey)
	if err != nil {
		return err
	}
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		if err := tx.ReplaceRemoteDevices(ctx, userID, devices, streamID); err != nil {
			return err
		}
		if _, err := applyRemoteCrossSigning(ctx, tx, userID, cs, true); err != nil {
			return err
		}
		if !tell {
			return nil
		}
		_, err := tx.MarkDeviceListChanged(ctx, userID, "")
		return err
	})
}

// parseRemoteDevice reads one device of a /user/devices answer.
func parseRemoteDevice(raw json.RawMessage, userID string) (storage.RemoteDevice, error) {
	var d struct {
		DeviceID    string          `json:"device_id"`
		Keys        json.RawMessage `json:"keys"`
		DisplayName json.RawMessage `json:"device_display_name"`
	}
	if err := json.Unmarshal(raw, &d); err != nil || d.DeviceID == "" {
		return storage.RemoteDevice{}, errors.New("a device without a device_id")
	}
	out := storage.RemoteDevice{DeviceID: d.DeviceID}
	_ = json.Unmarshal(d.DisplayName, &out.DisplayName)
	if !isJSONNull(d.Keys) {
		keys, err := checkRemoteDeviceKeys(d.Keys, userID, d.DeviceID)
		if err != nil {
			return out, err
		}
		out.KeyJSON = keys
	}
	return out, nil
}

// remoteCrossSigning is a remote user's checked cross-signing keys (nil:
// not given).
type remoteCrossSigning struct {
	master, selfSigning []byte
	masterPub           string
}

// parseRemoteCrossSigning checks the master and self-signing keys a server
// gave for its user (a self-signing key needs the master key beside it).
func parseRemoteCrossSigning(userID string, master, selfSigning json.RawMessage) (remoteCrossSigning, error) {
	var cs remoteCrossSigning
	if !isJSONNull(master) {
		var err error
		if cs.master, cs.masterPub, err = checkRemoteCrossSigningKey(master, userID, "master", ""); err != nil {
			return cs, err
		}
	}
	if !isJSONNull(selfSigning) {
		if cs.master == nil {
			return cs, fmt.Errorf("self-signing key of %s without a master key", userID)
		}
		var err error
		if cs.selfSigning, _, err = checkRemoteCrossSigningKey(selfSigning, userID, "self_signing", cs.masterPub); err != nil {
			return cs, err
		}
	}
	return cs, nil
}

// applyRemoteCrossSigning caches a remote user's cross-signing keys; whole
// replaces (and removes keys not given), else only the given keys are set.
// A replaced master key takes the signatures made of it along. It reports
// whether anything changed.
func applyRemoteCrossSigning(ctx context.Context, tx *storage.Tx, userID string, cs remoteCrossSigning, whole bool) (bool, error) {
	old, err := tx.CrossSigningKeys(ctx, userID)
	if err != nil {
		return false, err
	}
	changed := false
	for _, k := range []struct {
		typ string
		key []byte
	}{{storage.KeyTypeMaster, cs.master}, {storage.KeyTypeSelfSigning, cs.selfSigning}} {
		prev, had := old[k.typ]
		switch {
		case k.key == nil && (!whole || !had):
			continue
		case k.key != nil && string(prev) == string(k.key):
			continue
		}
		changed = true
		if k.typ == storage.KeyTypeMaster && had {
			if err := tx.DeleteSignaturesOf(ctx, userID, crossSigningPub(prev)); err != nil {
				return false, err
			}
		}
		if k.key == nil {
			err = tx.DeleteCrossSigningKey(ctx, userID, k.typ)
		} else {
			err = tx.SetCrossSigningKey(ctx, userID, k.typ, k.key)
		}
		if err != nil {
			return false, err
		}
	}
	return changed, nil
}

// claimRemotes claims other servers' users' keys (or lists the servers'
// failures) into out.
func (s *Service) claimRemotes(ctx context.Context, byServer map[string]map[string]map[string]string, timeout time.Duration, out *ClaimResponse) {
	servers := sortedKeys(byServer)
	if s.remote == nil {
		for _, server := range servers {
			out.Failures[server] = unreachable(nil)
		}
		return
	}
	type claimed struct {
		keys OneTimeKeys
		err  error
	}
	fanOut(ctx, servers, timeout, func(ctx context.Context, server string) claimed {
		keys, err := s.remote.ClaimKeys(ctx, server, byServer[server])
		return claimed{keys, err}
	}, func(server string, c claimed) {
		if c.err != nil {
			out.Failures[server] = failureOf(c.err)
			return
		}
		for userID, devices := range checkClaimed(server, byServer[server], c.keys) {
			out.OneTimeKeys[userID] = devices
		}
	}, func(server string) { out.Failures[server] = timedOut })
}

// checkClaimed keeps the keys a server gave for what was claimed of it:
// its users' devices asked, keys of the algorithm asked, objects or strings.
func checkClaimed(server string, asked map[string]map[string]string, got OneTimeKeys) OneTimeKeys {
	out := OneTimeKeys{}
	for userID, devices := range got {
		if remoteUserOf(userID, server) != nil {
			continue
		}
		for deviceID, keys := range devices {
			alg, ok := asked[userID][deviceID]
			if !ok {
				continue
			}
			for keyID, key := range keys {
				a, _, ok := cutKeyID(keyID)
				if !ok || a != alg || !isObjectOrString(key) {
					continue
				}
				if out[userID] == nil {
					out[userID] = map[string]map[string]json.RawMessage{}
				}
				out[userID][deviceID] = map[string]json.RawMessage{keyID: key}
				break
			}
		}
	}
	return out
}

// cutKeyID splits "<algorithm>:<key ID>".
func cutKeyID(id string) (alg, keyID string, ok bool) {
	alg, keyID, ok = strings.Cut(id, ":")
	return alg, keyID, ok && alg != "" && keyID != ""
}

// isObjectOrString reports a JSON object or string.
func isObjectOrString(raw json.RawMessage) bool {
	t := strings.TrimSpace(string(raw))
	return strings.HasPrefix(t, "{") || strings.HasPrefix(t, `"`)
}

// userLock is the lock of a remote user's cached device list.
func (s *Service) userLock(userID string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(userID))
	return &s.userLocks[h.Sum32()%uint32(len(s.userLocks))]
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
