package e2ee

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"matrixhs/internal/ids"
)

// What other servers say about their users' keys is checked before it is
// believed or passed on: a server speaks only for its own users, device
// keys must be the named device's and not carry a forged self-signature, cross-signing keys
// must be the user's, of their usage, and a self-signing key signed by the
// master key.

// maxRemoteDevices bounds the devices of one remote user this server
// keeps (as Synapse, a list beyond it is not cached).
const maxRemoteDevices = 1000

// remoteUserOf checks that userID is a valid user ID of server.
func remoteUserOf(userID, server string) error {
	if err := ids.UserID(userID); err != nil {
		return fmt.Errorf("%q is not a user ID: %w", userID, err)
	}
	if serverOf(userID) != server {
		return fmt.Errorf("%s is not a user of %s", userID, server)
	}
	return nil
}

// checkRemoteDeviceKeys checks a device_keys object another server gave for
// one of its users' devices: the user and device are the ones named, the
// device's ed25519 key is there and, if the object carries its signature,
// signed it. It returns the
// canonical JSON without unsigned (as cached).
func checkRemoteDeviceKeys(raw json.RawMessage, userID, deviceID string) ([]byte, error) {
	var dk struct {
		UserID     string                       `json:"user_id"`
		DeviceID   string                       `json:"device_id"`
		Algorithms []string                     `json:"algorithms"`
		Keys       map[string]string            `json:"keys"`
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(raw, &dk); err != nil {
		return nil, fmt.Errorf("device keys of %s %s: %w", userID, deviceID, err)
	}
	if dk.UserID != userID || dk.DeviceID != deviceID {
		return nil, fmt.Errorf("device keys named %s %s given for %s %s", dk.UserID, dk.DeviceID, userID, deviceID)
	}
	keyID := "ed25519:" + deviceID
	pub, ok := decodeEd25519(dk.Keys[keyID])
	if !ok {
		return nil, fmt.Errorf("device keys of %s %s have no valid %s key", userID, deviceID, keyID)
	}
	// Unsigned keys are taken, as uploads are here and on Synapse (clients
	// check the self-signature themselves); a signature by the device's
	// key that does not verify is a forgery.
	if dk.Signatures[userID][keyID] != "" && !verifySigned(raw, userID, keyID, pub) {
		return nil, fmt.Errorf("device keys of %s %s carry a self-signature that does not verify", userID, deviceID)
	}
	return canonicalWithout(raw, "unsigned")
}

// checkRemoteCrossSigningKey checks a cross-signing key another server gave
// for one of its users: the user's, of the usage, one ed25519 key, and for
// a self-signing key signed by masterPub (when known). It returns the
// canonical JSON without unsigned and the public key.
func checkRemoteCrossSigningKey(raw json.RawMessage, userID, usage, masterPub string) ([]byte, string, error) {
	var k struct {
		UserID string            `json:"user_id"`
		Usage  []string          `json:"usage"`
		Keys   map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, "", fmt.Errorf("%s key of %s: %w", usage, userID, err)
	}
	if k.UserID != userID || !slices.Contains(k.Usage, usage) || len(k.Keys) != 1 {
		return nil, "", fmt.Errorf("%s key of %s is not one", usage, userID)
	}
	var pub string
	for id, v := range k.Keys {
		if _, ok := decodeEd25519(v); !ok || id != "ed25519:"+v {
			return nil, "", fmt.Errorf("%s key of %s is not an ed25519 key", usage, userID)
		}
		pub = v
	}
	if usage == "self_signing" {
		mk, ok := decodeEd25519(masterPub)
		if !ok || !verifySigned(raw, userID, "ed25519:"+masterPub, mk) {
			return nil, "", fmt.Errorf("self-signing key of %s is not signed by the master key", userID)
		}
	}
	canonical, err := canonicalWithout(raw, "unsigned")
	if err != nil {
		return nil, "", err
	}
	return canonical, pub, nil
}

// parseStreamID reads a stream ID: an integer, or a string of one (as
// some servers send them).
func parseStreamID(raw json.RawMessage) (int64, bool) {
	s := strings.TrimSpace(string(raw))
	if unq, err := strconv.Unquote(s); err == nil {
		s = unq
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// displayNameOf reads the device_display_name of a device's unsigned data
// ("" when absent or not a string).
func displayNameOf(raw json.RawMessage) string {
	var k struct {
		Unsigned struct {
			Name json.RawMessage `json:"device_display_name"`
		} `json:"unsigned"`
	}
	if json.Unmarshal(raw, &k) != nil {
		return ""
	}
	var name string
	_ = json.Unmarshal(k.Unsigned.Name, &name)
	return name
}
