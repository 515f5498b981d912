package e2e

import (
	"fmt"
	"net/http"
	"reflect"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// toDeviceBodies lists the "n" content fields of a sync's to-device events
// (with their type and sender checked).
func toDeviceBodies(t *testing.T, body map[string]any, wantType, wantSender string) []string {
	t.Helper()
	evs, ok := jget(body, "to_device", "events").([]any)
	if !ok {
		t.Fatalf("sync without to_device.events: %v", body["to_device"])
	}
	out := []string{}
	for _, e := range evs {
		if jget(e, "type") != wantType || jget(e, "sender") != wantSender {
			t.Fatalf("to-device event %v: want type %s from %s", e, wantType, wantSender)
		}
		n, _ := jget(e, "content", "n").(string)
		out = append(out, n)
	}
	return out
}

func sendToDevice(t *testing.T, d *e2eeDevice, txn string, messages map[string]map[string]any) {
	t.Helper()
	do(t, "PUT", v3(d.s, "sendToDevice", "m.test", txn), d.token, map[string]any{"messages": messages}).want(t, 200, "")
}

func TestE2EEToDeviceDeliveryAndAck(t *testing.T) {
	s := start(t, nil)
	alice := e2eeUser(t, s, "alice", "ALICE1")
	bob1 := e2eeUser(t, s, "bob", "BOB1")
	bob2 := e2eeLogin(t, s, "bob", "BOB2")
	s0 := bob1.sync(t, "", 0)["next_batch"].(string)
	bob2Since := bob2.sync(t, "", 0)["next_batch"].(string)

	// A long-polling sync wakes for a to-device message.
	done := make(chan map[string]any, 1)
	go func() { done <- bob1.sync(t, s0, 20000) }()
	time.Sleep(200 * time.Millisecond)
	sendToDevice(t, alice, "t1", map[string]map[string]any{bob1.userID: {"BOB1": map[string]any{"n": "1"}}})
	var body map[string]any
	select {
	case body = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("long-polling sync did not wake for a to-device message")
	}
	if got := toDeviceBodies(t, body, "m.test", alice.userID); !reflect.DeepEqual(got, []string{"1"}) {
		t.Fatalf("first delivery = %v", got)
	}
	s1 := body["next_batch"].(string)

	// The same transaction again is not delivered twice; "*" reaches every
	// device; several messages arrive in order; mautrix sends too.
	sendToDevice(t, alice, "t1", map[string]map[string]any{bob1.userID: {"BOB1": map[string]any{"n": "1-again"}}})
	sendToDevice(t, alice, "t2", map[string]map[string]any{bob1.userID: {"*": map[string]any{"n": "2"}}})
	for i := 3; i <= 5; i++ {
		sendToDevice(t, alice, fmt.Sprintf("t%d", i), map[string]map[string]any{bob1.userID: {"BOB1": map[string]any{"n": fmt.Sprint(i)}}})
	}
	_, err := alice.cli.SendToDevice(ctxT(t), event.Type{Type: "m.test", Class: event.ToDeviceEventType}, &mautrix.ReqSendToDevice{
		Messages: map[id.UserID]map[id.DeviceID]*event.Content{
			id.UserID(bob1.userID):      {"BOB1": {Raw: map[string]any{"n": "6"}}, "NO_SUCH_DEVICE": {Raw: map[string]any{"n": "x"}}},
			"@remote:elsewhere.example": {"DEV": {Raw: map[string]any{"n": "remote"}}},
		},
	})
	if err != nil {
		t.Fatalf("mautrix SendToDevice: %v", err)
	}
	want := []string{"2", "3", "4", "5", "6"}
	body = bob1.sync(t, s1, 0)
	if got := toDeviceBodies(t, body, "m.test", alice.userID); !reflect.DeepEqual(got, want) {
		t.Fatalf("second delivery = %v, want %v", got, want)
	}
	s2 := body["next_batch"].(string)
	// Not acknowledged yet: the same since delivers them again.
	if got := toDeviceBodies(t, bob1.sync(t, s1, 0), "m.test", alice.userID); !reflect.DeepEqual(got, want) {
		t.Fatalf("redelivery before ack = %v, want %v", got, want)
	}
	// Syncing from s2 acknowledges them: they are deleted for good.
	if got := toDeviceBodies(t, bob1.sync(t, s2, 0), "m.test", alice.userID); len(got) != 0 {
		t.Fatalf("delivery after ack = %v, want none", got)
	}
	if got := toDeviceBodies(t, bob1.sync(t, s1, 0), "m.test", alice.userID); len(got) != 0 {
		t.Fatalf("acknowledged messages came back: %v", got)
	}
	// bob's other device got only the "*" message.
	if got := toDeviceBodies(t, bob2.sync(t, bob2Since, 0), "m.test", alice.userID); !reflect.DeepEqual(got, []string{"2"}) {
		t.Fatalf("BOB2 got %v, want [2]", got)
	}

	// Bad requests.
	do(t, "PUT", v3(s, "sendToDevice", "m.test", "bad1"), alice.token, map[string]any{}).want(t, http.StatusBadRequest, "M_MISSING_PARAM")
	do(t, "PUT", v3(s, "sendToDevice", "m.test", "bad2"), alice.token, map[string]any{
		"messages": map[string]any{bob1.userID: map[string]any{"BOB1": "not an object"}},
	}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "PUT", v3(s, "sendToDevice", "m.test", "bad3"), "", map[string]any{"messages": map[string]any{}}).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
}

func TestE2EEToDeviceSurvivesRestart(t *testing.T) {
	s := start(t, nil)
	alice := e2eeUser(t, s, "alice", "ALICE1")
	bob := e2eeUser(t, s, "bob", "BOB1")
	since := bob.sync(t, "", 0)["next_batch"].(string)
	for i := range 3 {
		sendToDevice(t, alice, fmt.Sprintf("r%d", i), map[string]map[string]any{bob.userID: {"BOB1": map[string]any{"n": fmt.Sprint(i)}}})
	}
	s2 := s.Restart()
	bob.s = s2
	body := bob.sync(t, since, 0)
	if got := toDeviceBodies(t, body, "m.test", alice.userID); !reflect.DeepEqual(got, []string{"0", "1", "2"}) {
		t.Fatalf("after restart = %v", got)
	}
	// The transaction IDs survive too.
	alice.s = s2
	sendToDevice(t, alice, "r0", map[string]map[string]any{bob.userID: {"BOB1": map[string]any{"n": "dup"}}})
	if got := toDeviceBodies(t, bob.sync(t, body["next_batch"].(string), 0), "m.test", alice.userID); len(got) != 0 {
		t.Fatalf("retried transaction after restart delivered %v", got)
	}
	// Logging out drops the device's queue.
	sendToDevice(t, alice, "r9", map[string]map[string]any{bob.userID: {"BOB1": map[string]any{"n": "9"}}})
	if has, err := s2.DB.HasToDeviceUpTo(ctxT(t), bob.userID, "BOB1", s2.DB.StreamPosition()); err != nil || !has {
		t.Fatalf("message not queued: %v %v", has, err)
	}
	do(t, "POST", v3(s2, "logout"), bob.token, map[string]any{}).want(t, 200, "")
	if has, err := s2.DB.HasToDeviceUpTo(ctxT(t), bob.userID, "BOB1", s2.DB.StreamPosition()); err != nil || has {
		t.Fatalf("logged-out device keeps its queue: %v %v", has, err)
	}
}
