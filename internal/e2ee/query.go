package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"time"

	"matrixhs/storage"
)

// QueryResponse is the answer to a key query (POST /keys/query, and
// federation's /user/keys/query without user_signing_keys).
type QueryResponse struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
	UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
	Failures        map[string]Failure                    `json:"failures"`
}

func newQueryResponse() *QueryResponse {
	return &QueryResponse{
		DeviceKeys: map[string]map[string]json.RawMessage{}, MasterKeys: map[string]json.RawMessage{},
		SelfSigningKeys: map[string]json.RawMessage{}, UserSigningKeys: map[string]json.RawMessage{},
		Failures: map[string]Failure{},
	}
}

// signedJSON decodes a stored key object for adding signatures and unsigned data.
type signedJSON struct {
	fields map[string]json.RawMessage
	sigs   map[string]map[string]string
}

func decodeSigned(raw []byte) (*signedJSON, error) {
	o := &signedJSON{}
	if err := json.Unmarshal(raw, &o.fields); err != nil {
		return nil, err
	}
	if s, ok := o.fields["signatures"]; ok {
		if err := json.Unmarshal(s, &o.sigs); err != nil {
			return nil, err
		}
	}
	if o.sigs == nil {
		o.sigs = map[string]map[string]string{}
	}
	return o, nil
}

func (o *signedJSON) addSignature(signer, keyID, sig string) {
	if o.sigs[signer] == nil {
		o.sigs[signer] = map[string]string{}
	}
	o.sigs[signer][keyID] = sig
}

func (o *signedJSON) marshal(unsigned map[string]any) json.RawMessage {
	if len(o.sigs) > 0 {
		o.fields["signatures"], _ = json.Marshal(o.sigs)
	}
	if unsigned != nil {
		o.fields["unsigned"], _ = json.Marshal(unsigned)
	}
	b, _ := json.Marshal(o.fields)
	return b
}

// crossSigningPub is the public key of a stored cross-signing key.
func crossSigningPub(raw []byte) string {
	var k struct {
		Keys map[string]string `json:"keys"`
	}
	if json.Unmarshal(raw, &k) != nil {
		return ""
	}
	for _, v := range k.Keys {
		return v
	}
	return ""
}

// QueryKeys answers a client's key query: for each user, the keys of the
// listed devices (all when the list is empty) and their cross-signing
// keys, as requester (a local user) sees them: only a user asking about
// themself gets their user-signing key. Users of other servers are asked
// through the Remote within timeout; a server that fails or does not
// answer in time is listed in the failures.
func (s *Service) QueryKeys(ctx context.Context, requester string, deviceKeys map[string][]string, timeout time.Duration) (*QueryResponse, error) {
	out := newQueryResponse()
	remote := map[string]map[string][]string{}
	for userID, devices := range deviceKeys {
		if !s.isLocalUser(userID) {
			if server := serverOf(userID); server != "" {
				if remote[server] == nil {
					remote[server] = map[string][]string{}
				}
				remote[server][userID] = devices
			}
			continue
		}
		if err := s.addLocalKeys(ctx, requester, userID, devices, out); err != nil {
			return nil, err
		}
	}
	s.queryRemotes(ctx, requester, remote, timeout, out)
	return out, nil
}

// addLocalKeys adds a local user's keys to out, as requester sees them
// ("" for another server).
func (s *Service) addLocalKeys(ctx context.Context, requester, userID string, devices []string, out *QueryResponse) error {
	keys, err := s.userKeys(ctx, requester, userID, devices)
	if err != nil {
		return err
	}
	out.DeviceKeys[userID] = keys.devices
	if keys.master != nil {
		out.MasterKeys[userID] = keys.master
	}
	if keys.selfSigning != nil {
		out.SelfSigningKeys[userID] = keys.selfSigning
	}
	if keys.userSigning != nil && userID == requester {
		out.UserSigningKeys[userID] = keys.userSigning
	}
	return nil
}

// FederationKeys is the answer to another server's key query (federation's
// POST /user/keys/query).
type FederationKeys struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
}

// QueryKeysForServer answers another server's key query about local users
// (ErrNotLocal for any other): their device keys with display names, and
// their public cross-signing keys.
func (s *Service) QueryKeysForServer(ctx context.Context, deviceKeys map[string][]string) (*FederationKeys, error) {
	if err := s.allLocal(sortedKeys(deviceKeys)); err != nil {
		return nil, err
	}
	out := newQueryResponse()
	for _, userID := range sortedKeys(deviceKeys) {
		if err := s.addLocalKeys(ctx, "", userID, deviceKeys[userID], out); err != nil {
			return nil, err
		}
	}
	return &FederationKeys{DeviceKeys: out.DeviceKeys, MasterKeys: out.MasterKeys, SelfSigningKeys: out.SelfSigningKeys}, nil
}

// allLocal refuses user IDs that are not of local users.
func (s *Service) allLocal(users []string) error {
	for _, userID := range users {
		if !s.isLocalUser(userID) {
			return refuse(ErrNotLocal, "User %s is not hosted on this homeserver", userID)
		}
	}
	return nil
}

type userKeysResult struct {
	devices                          map[string]json.RawMessage
	master, selfSigning, userSigning json.RawMessage
}

// userKeys collects one local user's device and cross-signing keys as
// requester may see them: device keys with the owner's cross-signatures and
// display names; the master key with the signatures of its owner and of the
// requester.
func (s *Service) userKeys(ctx context.Context, requester, userID string, devices []string) (*userKeysResult, error) {
	keys, err := s.db.QueryDeviceKeys(ctx, userID, devices)
	if err != nil {
		return nil, err
	}
	signers := []string{userID}
	if requester != userID && requester != "" {
		signers = append(signers, requester)
	}
	sigs, err := s.db.CrossSignatures(ctx, userID, signers)
	if err != nil {
		return nil, err
	}
	byTarget := map[string][]storage.CrossSignature{}
	for _, sig := range sigs {
		byTarget[sig.TargetKeyID] = append(byTarget[sig.TargetKeyID], sig)
	}
	out := &userKeysResult{devices: map[string]json.RawMessage{}}
	for _, k := range keys {
		obj, err := decodeSigned(k.KeyJSON)
		if err != nil {
			return nil, err
		}
		for _, sig := range byTarget[k.DeviceID] {
			if sig.SignerUserID == userID {
				obj.addSignature(sig.SignerUserID, sig.SignerKeyID, sig.Signature)
			}
		}
		unsigned := map[string]any{}
		if k.DisplayName != "" {
			unsigned["device_display_name"] = k.DisplayName
		}
		out.devices[k.DeviceID] = obj.marshal(unsigned)
	}
	cs, err := s.crossSigningKeys(ctx, userID, byTarget)
	if err != nil {
		return nil, err
	}
	out.master, out.selfSigning, out.userSigning = cs.master, cs.selfSigning, cs.userSigning
	return out, nil
}

// crossSigning is a user's cross-signing keys as one requester sees them.
type crossSigning struct{ master, selfSigning, userSigning json.RawMessage }

// crossSigningFor reads a user's cross-signing keys, the master key with
// the signatures of its owner and of requester.
func (s *Service) crossSigningFor(ctx context.Context, requester, userID string) (crossSigning, error) {
	signers := []string{userID}
	if requester != userID && requester != "" {
		signers = append(signers, requester)
	}
	sigs, err := s.db.CrossSignatures(ctx, userID, signers)
	if err != nil {
		return crossSigning{}, err
	}
	byTarget := map[string][]storage.CrossSignature{}
	for _, sig := range sigs {
		byTarget[sig.TargetKeyID] = append(byTarget[sig.TargetKeyID], sig)
	}
	return s.crossSigningKeys(ctx, userID, byTarget)
}

// crossSigningKeys reads a user's cross-signing keys, adding to the master
// key the signatures of it among byTarget.
func (s *Service) crossSigningKeys(ctx context.Context, userID string, byTarget map[string][]storage.CrossSignature) (crossSigning, error) {
	var out crossSigning
	cs, err := s.db.CrossSigningKeys(ctx, userID)
	if err != nil {
		return out, err
	}
	if raw, ok := cs[storage.KeyTypeMaster]; ok {
		obj, err := decodeSigned(raw)
		if err != nil {
			return out, err
		}
		for _, sig := range byTarget[crossSigningPub(raw)] {
			obj.addSignature(sig.SignerUserID, sig.SignerKeyID, sig.Signature)
		}
		out.master = obj.marshal(nil)
	}
	if raw, ok := cs[storage.KeyTypeSelfSigning]; ok {
		out.selfSigning = raw
	}
	if raw, ok := cs[storage.KeyTypeUserSigning]; ok {
		out.userSigning = raw
	}
	return out, nil
}

// OneTimeKeys are claimed keys: user → device → "<algorithm>:<key ID>" → key.
type OneTimeKeys map[string]map[string]map[string]json.RawMessage

// ClaimResponse is the answer to a claim (POST /keys/claim, and
// federation's /user/keys/claim).
type ClaimResponse struct {
	OneTimeKeys OneTimeKeys        `json:"one_time_keys"`
	Failures    map[string]Failure `json:"failures"`
}

// ClaimKeys claims one key per (user, device, algorithm): a one-time key,
// else the device's fallback key. Local claims happen in one write; each
// device whose keys were claimed learns its new counts at its next sync.
// Users of other servers are claimed through the Remote within timeout.
func (s *Service) ClaimKeys(ctx context.Context, claims map[string]map[string]string, timeout time.Duration) (*ClaimResponse, error) {
	local := map[string]map[string]string{}
	remote := map[string]map[string]map[string]string{}
	for userID, devices := range claims {
		if s.isLocalUser(userID) {
			local[userID] = devices
			continue
		}
		if server := serverOf(userID); server != "" {
			if remote[server] == nil {
				remote[server] = map[string]map[string]string{}
			}
			remote[server][userID] = devices
		}
	}
	out, err := s.claimLocal(ctx, local)
	if err != nil {
		return nil, err
	}
	s.claimRemotes(ctx, remote, timeout, out)
	return out, nil
}

// ClaimKeysForServer claims keys of local users for another server
// (federation's POST /user/keys/claim); ErrNotLocal for any other user.
func (s *Service) ClaimKeysForServer(ctx context.Context, claims map[string]map[string]string) (OneTimeKeys, error) {
	if err := s.allLocal(sortedKeys(claims)); err != nil {
		return nil, err
	}
	out, err := s.claimLocal(ctx, claims)
	if err != nil {
		return nil, err
	}
	return out.OneTimeKeys, nil
}

// claimLocal claims local users' keys in one write.
func (s *Service) claimLocal(ctx context.Context, claims map[string]map[string]string) (*ClaimResponse, error) {
	out := &ClaimResponse{OneTimeKeys: OneTimeKeys{}, Failures: map[string]Failure{}}
	type claim struct{ user, device, alg string }
	var local []claim
	for userID, devices := range claims {
		for deviceID, alg := range devices {
			local = append(local, claim{userID, deviceID, alg})
		}
	}
	if len(local) == 0 {
		return out, nil
	}
	sort.Slice(local, func(i, j int) bool {
		if local[i].user != local[j].user {
			return local[i].user < local[j].user
		}
		return local[i].device < local[j].device
	})
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		clear(out.OneTimeKeys)
		var pos int64
		for _, c := range local {
			k, _, err := tx.ClaimKey(ctx, c.user, c.device, c.alg)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if out.OneTimeKeys[c.user] == nil {
				out.OneTimeKeys[c.user] = map[string]map[string]json.RawMessage{}
			}
			out.OneTimeKeys[c.user][c.device] = map[string]json.RawMessage{k.Algorithm + ":" + k.KeyID: k.KeyJSON}
			// The claimed device's sync wakes with its new counts; the
			// stream moving on also gives every sync a new next_batch,
			// which matrix-nio waits for before answering a key request.
			if pos == 0 {
				pos = tx.NextStreamPos()
			}
			if err := tx.MarkKeyCountsChanged(ctx, pos, c.user, c.device); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UserDevices is a local user's device list as another server asks for it
// (federation's GET /user/devices/{userId}).
type UserDevices struct {
	UserID string `json:"user_id"`
	// StreamID is the stream ID of the user's latest device list update
	// the answer reflects: the prev_id of the next one.
	StreamID       int64           `json:"stream_id"`
	Devices        []UserDevice    `json:"devices"`
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
}

// UserDevice is one device of a UserDevices answer (without keys before
// it uploads them, as Synapse answers).
type UserDevice struct {
	DeviceID    string          `json:"device_id"`
	DisplayName string          `json:"device_display_name,omitempty"`
	Keys        json.RawMessage `json:"keys,omitempty"`
}

// UserDevices lists a local user's devices with their keys (signed by the
// owner's self-signing key where they are) and the user's public
// cross-signing keys.
func (s *Service) UserDevices(ctx context.Context, userID string) (*UserDevices, error) {
	if !s.isLocalUser(userID) {
		return nil, refuse(ErrNotLocal, "User %s is not hosted on this homeserver", userID)
	}
	// Read first: the answer reflects at least this change.
	streamID, err := s.db.LatestDeviceListChange(ctx, userID)
	if err != nil {
		return nil, err
	}
	keys, err := s.userKeys(ctx, "", userID, nil)
	if err != nil {
		return nil, err
	}
	devices, err := s.db.Devices(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := &UserDevices{UserID: userID, StreamID: streamID, Devices: []UserDevice{},
		MasterKey: keys.master, SelfSigningKey: keys.selfSigning}
	for _, d := range devices { // ordered by device ID
		out.Devices = append(out.Devices, UserDevice{DeviceID: d.DeviceID, DisplayName: d.DisplayName, Keys: keys.devices[d.DeviceID]})
	}
	return out, nil
}

// DeviceListChanges are the users whose devices or cross-signing keys
// changed in (from, to] as viewer sees them (changed), and those viewer
// no longer shares a room with (left); never nil.
func (s *Service) DeviceListChanges(ctx context.Context, viewer string, from, to int64) (changed, left []string, err error) {
	changed, left, err = s.db.DeviceListChanges(ctx, viewer, from, to)
	if err != nil {
		return nil, nil, err
	}
	if changed == nil {
		changed = []string{}
	}
	if left == nil {
		left = []string{}
	}
	return changed, left, nil
}
