package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"sort"

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

// QueryKeys answers a key query: for each user, the keys of the listed
// devices (all when the list is empty) and their cross-signing keys, as
// requester sees them. requester is a local user, or "" for another server
// asking: only a user asking about themself gets their user-signing key.
// Users of other servers are asked through the Remote; a server that cannot
// be reached is listed in the failures.
func (s *Service) QueryKeys(ctx context.Context, requester string, deviceKeys map[string][]string) (*QueryResponse, error) {
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
		keys, err := s.userKeys(ctx, requester, userID, devices)
		if err != nil {
			return nil, err
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
	}
	for server, users := range remote {
		s.queryRemote(ctx, server, users, out)
	}
	return out, nil
}

// queryRemote adds another server's answer (or its failure) to out.
func (s *Service) queryRemote(ctx context.Context, server string, users map[string][]string, out *QueryResponse) {
	if s.remote == nil {
		out.Failures[server] = unreachable(nil)
		return
	}
	res, err := s.remote.QueryKeys(ctx, server, users)
	if err != nil {
		out.Failures[server] = unreachable(err)
		return
	}
	// Only what the server may speak for: its own users.
	for userID := range users {
		if keys, ok := res.DeviceKeys[userID]; ok {
			out.DeviceKeys[userID] = keys
		}
		if k, ok := res.MasterKeys[userID]; ok {
			out.MasterKeys[userID] = k
		}
		if k, ok := res.SelfSigningKeys[userID]; ok {
			out.SelfSigningKeys[userID] = k
		}
	}
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
	cs, err := s.db.CrossSigningKeys(ctx, userID)
	if err != nil {
		return nil, err
	}
	if raw, ok := cs[storage.KeyTypeMaster]; ok {
		obj, err := decodeSigned(raw)
		if err != nil {
			return nil, err
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
// Users of other servers are claimed through the Remote.
func (s *Service) ClaimKeys(ctx context.Context, claims map[string]map[string]string) (*ClaimResponse, error) {
	out := &ClaimResponse{OneTimeKeys: OneTimeKeys{}, Failures: map[string]Failure{}}
	type claim struct{ user, device, alg string }
	var local []claim
	remote := map[string]map[string]map[string]string{}
	for userID, devices := range claims {
		if !s.isLocalUser(userID) {
			if server := serverOf(userID); server != "" {
				if remote[server] == nil {
					remote[server] = map[string]map[string]string{}
				}
				remote[server][userID] = devices
			}
			continue
		}
		for deviceID, alg := range devices {
			local = append(local, claim{userID, deviceID, alg})
		}
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
	for server, users := range remote {
		s.claimRemote(ctx, server, users, out)
	}
	return out, nil
}

// claimRemote adds another server's claimed keys (or its failure) to out.
func (s *Service) claimRemote(ctx context.Context, server string, users map[string]map[string]string, out *ClaimResponse) {
	if s.remote == nil {
		out.Failures[server] = unreachable(nil)
		return
	}
	keys, err := s.remote.ClaimKeys(ctx, server, users)
	if err != nil {
		out.Failures[server] = unreachable(err)
		return
	}
	for userID := range users {
		if k, ok := keys[userID]; ok {
			out.OneTimeKeys[userID] = k
		}
	}
}

// UserDevices is a local user's device list as another server asks for it
// (federation's GET /user/devices/{userId}).
type UserDevices struct {
	UserID string `json:"user_id"`
	// StreamID orders the user's device-list updates; the stream position
	// of the answer, which no earlier update exceeds.
	StreamID       int64           `json:"stream_id"`
	Devices        []UserDevice    `json:"devices"`
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
}

// UserDevice is one device of a UserDevices answer.
type UserDevice struct {
	DeviceID    string          `json:"device_id"`
	DisplayName string          `json:"device_display_name,omitempty"`
	Keys        json.RawMessage `json:"keys"`
}

// UserDevices lists a local user's devices that have keys, with their keys
// (signed by the owner's self-signing key where they are) and the user's
// public cross-signing keys.
func (s *Service) UserDevices(ctx context.Context, userID string) (*UserDevices, error) {
	if !s.isLocalUser(userID) {
		return nil, refuse(ErrNotLocal, "%s is not a user of this server", userID)
	}
	streamID := s.db.StreamPosition()
	keys, err := s.userKeys(ctx, "", userID, nil)
	if err != nil {
		return nil, err
	}
	stored, err := s.db.QueryDeviceKeys(ctx, userID, nil)
	if err != nil {
		return nil, err
	}
	out := &UserDevices{UserID: userID, StreamID: streamID, Devices: []UserDevice{},
		MasterKey: keys.master, SelfSigningKey: keys.selfSigning}
	for _, d := range stored { // ordered by device ID
		if raw, ok := keys.devices[d.DeviceID]; ok {
			out.Devices = append(out.Devices, UserDevice{DeviceID: d.DeviceID, DisplayName: d.DisplayName, Keys: raw})
		}
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
