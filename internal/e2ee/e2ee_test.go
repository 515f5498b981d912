package e2ee

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"matrixhs/internal/dbtest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"matrixhs/internal/accounts"
	"matrixhs/storage"
)

func testService(t *testing.T, remote Remote) (*Service, *accounts.Service) {
	t.Helper()
	db, err := dbtest.Open(t, context.Background(), filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return New(db, Options{ServerName: "hs.test", Remote: remote}), accounts.New(db, accounts.Options{ServerName: "hs.test", BcryptCost: 4})
}

// newDevice registers a user with one device and uploads its keys and one
// one-time key.
func newDevice(t *testing.T, s *Service, acc *accounts.Service, name, display string) Device {
	t.Helper()
	ctx := context.Background()
	login, err := acc.Register(ctx, accounts.Registration{Localpart: name, Password: "pw",
		Device: accounts.NewDevice{DisplayName: display}})
	if err != nil {
		t.Fatal(err)
	}
	d := Device{UserID: login.UserID, DeviceID: login.DeviceID}
	keys, _ := json.Marshal(map[string]any{
		"user_id": d.UserID, "device_id": d.DeviceID, "algorithms": []string{"m.olm.v1.curve25519-aes-sha2"},
		"keys": map[string]string{"curve25519:" + d.DeviceID: "curvekey"}, "signatures": map[string]any{},
	})
	counts, err := s.UploadKeys(ctx, d, UploadKeysRequest{DeviceKeys: keys,
		OneTimeKeys: map[string]json.RawMessage{"curve25519:AAA": json.RawMessage(`"otk"`)}})
	if err != nil {
		t.Fatal(err)
	}
	if counts["curve25519"] != 1 || counts[algSignedCurve25519] != 0 {
		t.Fatalf("counts after upload = %v", counts)
	}
	return d
}

// fakeRemote answers for example.org and fails for everyone else; bob's
// device keys are signed by bobKey.
type fakeRemote struct {
	mu      sync.Mutex // servers are asked concurrently
	queried []string
	edus    []queuedEDU
	// hang, when set, holds every request to hang.example until closed
	// (a server that ignores the request's end).
	hang chan struct{}
}

type queuedEDU struct {
	dests   []string
	typ     string
	content []byte
}

// bobKey is the ed25519 key of @bob:example.org's device BOBDEV.
var bobKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

// signedDeviceKeys are device keys of userID's deviceID signed with key.
func signedDeviceKeys(t testing.TB, userID, deviceID string, key ed25519.PrivateKey) json.RawMessage {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{
		"user_id": userID, "device_id": deviceID, "algorithms": []string{"m.olm.v1.curve25519-aes-sha2"},
		"keys": map[string]string{"ed25519:" + deviceID: base64.RawStdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))},
	})
	signed, err := gomatrixserverlib.SignJSON(userID, gomatrixserverlib.KeyID("ed25519:"+deviceID), key, raw)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func (f *fakeRemote) QueryKeys(_ context.Context, server string, users map[string][]string) (*RemoteKeys, error) {
	if server == "hang.example" && f.hang != nil {
		<-f.hang
		return nil, errors.New("too late")
	}
	f.mu.Lock()
	f.queried = append(f.queried, server)
	f.mu.Unlock()
	if server != "example.org" {
		return nil, errors.New("connection refused")
	}
	bob := signedDeviceKeys(&testing.T{}, "@bob:example.org", "BOBDEV", bobKey)
	forged := signedDeviceKeys(&testing.T{}, "@bob:example.org", "FORGED", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32)))
	forged = bytes.Replace(forged, []byte(`"FORGED"`), []byte(`"OTHER"`), 1)
	devices, _ := json.Marshal(map[string]json.RawMessage{"BOBDEV": bob, "OTHER": forged})
	return &RemoteKeys{DeviceKeys: map[string]json.RawMessage{
		"@bob:example.org": devices,
		// Keys of a user of a third server: not the answering server's to give.
		"@eve:evil.example": json.RawMessage(`{"EVE": {}}`),
	}}, nil
}

func (f *fakeRemote) ClaimKeys(_ context.Context, server string, claims map[string]map[string]string) (OneTimeKeys, error) {
	return OneTimeKeys{
		"@bob:example.org":  {"BOBDEV": {"signed_curve25519:X": json.RawMessage(`{"key":"k"}`)}, "UNASKED": {"signed_curve25519:Y": json.RawMessage(`{"key":"k"}`)}},
		"@eve:evil.example": {"EVE": {"signed_curve25519:Z": json.RawMessage(`{"key":"k"}`)}},
	}, nil
}

func (f *fakeRemote) UserDevices(_ context.Context, server, userID string) (*RemoteDeviceList, error) {
	return nil, errors.New("connection refused")
}

func (f *fakeRemote) QueueEDU(_ context.Context, _ *storage.Tx, dests []string, typ string, content []byte) error {
	f.edus = append(f.edus, queuedEDU{dests, typ, content})
	return nil
}

// A local user's query gets local users' keys with display names, and
// other servers' users' keys through the Remote, which speaks only for its
// own users and devices signed by themselves; without a Remote, their
// servers are failures.
func TestQueryKeysLocalAndRemote(t *testing.T) {
	ctx := context.Background()
	remote := &fakeRemote{}
	s, acc := testService(t, remote)
	alice := newDevice(t, s, acc, "alice", "Alice's phone")

	res, err := s.QueryKeys(ctx, alice.UserID, map[string][]string{
		alice.UserID: nil, "@bob:example.org": nil, "@carol:down.example": nil,
	}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var dk map[string]any
	if err := json.Unmarshal(res.DeviceKeys[alice.UserID][alice.DeviceID], &dk); err != nil {
		t.Fatal(err)
	}
	if dk["unsigned"].(map[string]any)["device_display_name"] != "Alice's phone" {
		t.Errorf("local device keys = %v", dk)
	}
	if _, ok := res.DeviceKeys["@bob:example.org"]["BOBDEV"]; !ok {
		t.Errorf("remote keys missing: %v", res.DeviceKeys)
	}
	if _, ok := res.DeviceKeys["@bob:example.org"]["OTHER"]; ok {
		t.Error("device keys not signed by their device were passed on")
	}
	if _, ok := res.DeviceKeys["@eve:evil.example"]; ok {
		t.Error("a remote server spoke for another server's user")
	}
	if f, ok := res.Failures["down.example"]; !ok || f.Status != 503 {
		t.Errorf("failures = %v", res.Failures)
	}

	// Another server's query: local users only, no user-signing keys.
	fk, err := s.QueryKeysForServer(ctx, map[string][]string{alice.UserID: nil})
	if err != nil || len(fk.DeviceKeys[alice.UserID]) != 1 {
		t.Fatalf("query for a server: %+v %v", fk, err)
	}
	if _, err := s.QueryKeysForServer(ctx, map[string][]string{"@bob:example.org": nil}); !errors.Is(err, ErrNotLocal) {
		t.Fatalf("a server asking about a user not of this server: %v", err)
	}

	noFed, acc2 := testService(t, nil)
	newDevice(t, noFed, acc2, "alice", "")
	res, err = noFed.QueryKeys(ctx, "@alice:hs.test", map[string][]string{"@bob:example.org": nil}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if f := res.Failures["example.org"]; f.Status != 503 || f.Message == "" {
		t.Errorf("without federation: failures = %v", res.Failures)
	}
}

// A server that never answers is a failure once the timeout passes; the
// others' answers are there.
func TestQueryKeysTimeout(t *testing.T) {
	remote := &fakeRemote{hang: make(chan struct{})}
	defer close(remote.hang)
	s, acc := testService(t, remote)
	alice := newDevice(t, s, acc, "alice", "")
	res, err := s.QueryKeys(context.Background(), alice.UserID, map[string][]string{
		"@bob:example.org": nil, "@hung:hang.example": nil,
	}, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.DeviceKeys["@bob:example.org"]["BOBDEV"]; !ok {
		t.Errorf("the answering server's keys are missing: %v", res.DeviceKeys)
	}
	if f := res.Failures["hang.example"]; f.Status != 504 {
		t.Errorf("failures = %v", res.Failures)
	}
}

// Claims take a local one-time key once, and go to the Remote for other
// servers' users, keeping only what was asked of that server.
func TestClaimKeysLocalAndRemote(t *testing.T) {
	ctx := context.Background()
	s, acc := testService(t, &fakeRemote{})
	alice := newDevice(t, s, acc, "alice", "")
	claims := map[string]map[string]string{alice.UserID: {alice.DeviceID: "curve25519"}, "@bob:example.org": {"BOBDEV": "signed_curve25519"}}
	res, err := s.ClaimKeys(ctx, claims, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(res.OneTimeKeys[alice.UserID][alice.DeviceID]["curve25519:AAA"]) != `"otk"` {
		t.Errorf("local claim = %v", res.OneTimeKeys)
	}
	if _, ok := res.OneTimeKeys["@bob:example.org"]["BOBDEV"]; !ok {
		t.Errorf("remote claim = %v", res.OneTimeKeys)
	}
	if _, ok := res.OneTimeKeys["@bob:example.org"]["UNASKED"]; ok {
		t.Errorf("a key not asked for was passed on: %v", res.OneTimeKeys)
	}
	if _, ok := res.OneTimeKeys["@eve:evil.example"]; ok {
		t.Errorf("a remote server spoke for another server's user: %v", res.OneTimeKeys)
	}
	res, err = s.ClaimKeys(ctx, claims, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.OneTimeKeys[alice.UserID]; ok {
		t.Errorf("the one-time key was claimed twice: %v", res.OneTimeKeys)
	}
}

// A to-device message for a remote user is queued as an EDU for its
// server, in the write of the local ones, once per transaction ID; one for
// a local device is queued for its sync.
func TestSendToDeviceLocalAndRemote(t *testing.T) {
	ctx := context.Background()
	remote := &fakeRemote{}
	s, acc := testService(t, remote)
	alice := newDevice(t, s, acc, "alice", "")
	bob := newDevice(t, s, acc, "bob", "")
	msgs := map[string]map[string]json.RawMessage{
		bob.UserID:           {bob.DeviceID: json.RawMessage(`{"a": 1}`)},
		"@carol:example.org": {"*": json.RawMessage(`{"b":2}`)},
	}
	if err := s.SendToDevice(ctx, alice, "m.room_key_request", "txn1", msgs); err != nil {
		t.Fatal(err)
	}
	msgsOut, err := s.ToDevice(ctx, bob, 0, s.db.StreamPosition(), -1)
	if err != nil || len(msgsOut) != 1 || string(msgsOut[0].Content) != `{"a":1}` || msgsOut[0].Sender != alice.UserID {
		t.Fatalf("bob's messages = %+v, %v", msgsOut, err)
	}
	if len(remote.edus) != 1 || remote.edus[0].typ != EDUDirectToDevice || remote.edus[0].dests[0] != "example.org" {
		t.Fatalf("remote EDUs = %+v", remote.edus)
	}
	var edu toDeviceEDU
	if err := json.Unmarshal(remote.edus[0].content, &edu); err != nil || edu.Sender != alice.UserID ||
		edu.Type != "m.room_key_request" || edu.MessageID == "" || string(edu.Messages["@carol:example.org"]["*"]) != `{"b":2}` {
		t.Fatalf("EDU = %s", remote.edus[0].content)
	}
	// The same transaction again: nothing new anywhere.
	if err := s.SendToDevice(ctx, alice, "m.room_key_request", "txn1", msgs); err != nil || len(remote.edus) != 1 {
		t.Fatalf("retried transaction: %v, %d EDUs", err, len(remote.edus))
	}
	err = s.SendToDevice(ctx, alice, "x", "txn2", map[string]map[string]json.RawMessage{"nobody": {}})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("a non-user ID: %v", err)
	}
	big := json.RawMessage(`{"k":"` + strings.Repeat("x", MaxToDeviceContentBytes) + `"}`)
	err = s.SendToDevice(ctx, alice, "x", "txn3", map[string]map[string]json.RawMessage{"@carol:example.org": {"D": big}})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("an oversized message: %v", err)
	}
}

// UserDevices lists a local user's devices with keys for another server.
func TestUserDevices(t *testing.T) {
	ctx := context.Background()
	s, acc := testService(t, nil)
	alice := newDevice(t, s, acc, "alice", "Laptop")
	got, err := s.UserDevices(ctx, alice.UserID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Devices) != 1 || got.Devices[0].DeviceID != alice.DeviceID || got.Devices[0].DisplayName != "Laptop" || got.StreamID <= 0 {
		t.Fatalf("UserDevices = %+v", got)
	}
	if _, err := s.UserDevices(ctx, "@bob:example.org"); !errors.Is(err, ErrNotLocal) {
		t.Fatalf("remote user: %v", err)
	}
}
