package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"matrixhs/internal/accounts"
	"matrixhs/storage"
)

func testService(t *testing.T, remote Remote) (*Service, *accounts.Service) {
	t.Helper()
	db, err := storage.Open(context.Background(), filepath.Join(t.TempDir(), "k.db"))
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

// fakeRemote answers for example.org and fails for everyone else.
type fakeRemote struct {
	queried []string
	sent    map[string]map[string]json.RawMessage
}

func (f *fakeRemote) QueryKeys(_ context.Context, server string, users map[string][]string) (*QueryResponse, error) {
	f.queried = append(f.queried, server)
	if server != "example.org" {
		return nil, errors.New("connection refused")
	}
	out := newQueryResponse()
	out.DeviceKeys["@bob:example.org"] = map[string]json.RawMessage{"BOBDEV": json.RawMessage(`{"device_id":"BOBDEV"}`)}
	// Keys of a user of a third server: not the answering server's to give.
	out.DeviceKeys["@eve:evil.example"] = map[string]json.RawMessage{"EVE": json.RawMessage(`{}`)}
	return out, nil
}

func (f *fakeRemote) ClaimKeys(_ context.Context, server string, claims map[string]map[string]string) (OneTimeKeys, error) {
	return OneTimeKeys{"@bob:example.org": {"BOBDEV": {"signed_curve25519:X": json.RawMessage(`{"key":"k"}`)}}}, nil
}

func (f *fakeRemote) SendToDevice(_ context.Context, server, sender, evType, messageID string, messages map[string]map[string]json.RawMessage) error {
	f.sent = messages
	return nil
}

// Another server's query (requester "") gets the keys of local users with
// display names, but no user-signing keys; users of other servers are
// asked through the Remote, which speaks only for its own users; without
// a Remote, their servers are failures.
func TestQueryKeysLocalAndRemote(t *testing.T) {
	ctx := context.Background()
	remote := &fakeRemote{}
	s, acc := testService(t, remote)
	alice := newDevice(t, s, acc, "alice", "Alice's phone")

	res, err := s.QueryKeys(ctx, "", map[string][]string{
		alice.UserID: nil, "@bob:example.org": nil, "@carol:down.example": nil,
	})
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
	if _, ok := res.DeviceKeys["@eve:evil.example"]; ok {
		t.Error("a remote server spoke for another server's user")
	}
	if f, ok := res.Failures["down.example"]; !ok || f.Status != 503 {
		t.Errorf("failures = %v", res.Failures)
	}
	if len(res.UserSigningKeys) != 0 {
		t.Errorf("user-signing keys given to another server: %v", res.UserSigningKeys)
	}

	noFed, acc2 := testService(t, nil)
	newDevice(t, noFed, acc2, "alice", "")
	res, err = noFed.QueryKeys(ctx, "@alice:hs.test", map[string][]string{"@bob:example.org": nil})
	if err != nil {
		t.Fatal(err)
	}
	if f := res.Failures["example.org"]; f.Status != 503 || f.Message == "" {
		t.Errorf("without federation: failures = %v", res.Failures)
	}
}

// Claims take a local one-time key once, and go to the Remote for other
// servers' users.
func TestClaimKeysLocalAndRemote(t *testing.T) {
	ctx := context.Background()
	s, acc := testService(t, &fakeRemote{})
	alice := newDevice(t, s, acc, "alice", "")
	claims := map[string]map[string]string{alice.UserID: {alice.DeviceID: "curve25519"}, "@bob:example.org": {"BOBDEV": "signed_curve25519"}}
	res, err := s.ClaimKeys(ctx, claims)
	if err != nil {
		t.Fatal(err)
	}
	if string(res.OneTimeKeys[alice.UserID][alice.DeviceID]["curve25519:AAA"]) != `"otk"` {
		t.Errorf("local claim = %v", res.OneTimeKeys)
	}
	if _, ok := res.OneTimeKeys["@bob:example.org"]["BOBDEV"]; !ok {
		t.Errorf("remote claim = %v", res.OneTimeKeys)
	}
	res, err = s.ClaimKeys(ctx, claims)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.OneTimeKeys[alice.UserID]; ok {
		t.Errorf("the one-time key was claimed twice: %v", res.OneTimeKeys)
	}
}

// A to-device message for a remote user goes to the Remote; one for a
// local device is queued for its sync.
func TestSendToDeviceLocalAndRemote(t *testing.T) {
	ctx := context.Background()
	remote := &fakeRemote{}
	s, acc := testService(t, remote)
	alice := newDevice(t, s, acc, "alice", "")
	bob := newDevice(t, s, acc, "bob", "")
	err := s.SendToDevice(ctx, alice, "m.room_key_request", "txn1", map[string]map[string]json.RawMessage{
		bob.UserID:           {bob.DeviceID: json.RawMessage(`{"a": 1}`)},
		"@carol:example.org": {"*": json.RawMessage(`{"b":2}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := s.ToDevice(ctx, bob, 0, s.db.StreamPosition(), -1)
	if err != nil || len(msgs) != 1 || string(msgs[0].Content) != `{"a":1}` || msgs[0].Sender != alice.UserID {
		t.Fatalf("bob's messages = %+v, %v", msgs, err)
	}
	if _, ok := remote.sent["@carol:example.org"]["*"]; !ok {
		t.Fatalf("remote messages = %v", remote.sent)
	}
	err = s.SendToDevice(ctx, alice, "x", "txn2", map[string]map[string]json.RawMessage{"nobody": {}})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("a non-user ID: %v", err)
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
