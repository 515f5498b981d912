package roomserver

import (
	"encoding/json"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
)

// TestUpgradedPowerLevels: string levels of old room versions become
// numbers and malformed ones are dropped; the upgrader gets enough power before v12, and from v12 no
// creator is listed.
func TestUpgradedPowerLevels(t *testing.T) {
	var old map[string]any
	json.Unmarshal([]byte(`{"ban":"60","users_default":0,"events":{"m.room.name":"50","m.room.power_levels":100},
		"users":{"@a:x":"100","@b:x":50,"@c:x":"oops"}}`), &old)
	fixupPowerLevels(old)
	if err := checkPowerLevels(&room{version: gomatrixserverlib.MustGetRoomVersion("10")}, mustJSON(map[string]any{"ban": old["ban"], "events": old["events"]})); err != nil {
		t.Fatalf("fixed-up levels still malformed: %v", err)
	}
	pl := upgradedPowerLevels(gomatrixserverlib.MustGetRoomVersion("11"), old, "@b:x", nil)
	users := pl["users"].(map[string]any)
	if users["@a:x"] != float64(100) || users["@b:x"] != int64(100) {
		t.Fatalf("v11 users = %v, want a kept at 100 and b raised to 100", users)
	}
	pl = upgradedPowerLevels(gomatrixserverlib.MustGetRoomVersion("12"), old, "@b:x", []string{"@a:x"})
	if users := pl["users"].(map[string]any); len(users) != 0 {
		t.Fatalf("v12 users = %v, want neither creator (and c's malformed level dropped)", users)
	}
}
