package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"matrixhs/tests/testserver"
)

// BenchmarkSlidingSync: a user in 100 rooms of 20 messages each, Element
// X's room list (range 0-19, timeline 1, its required_state). Reports the
// first request of a new connection (initial-ms) and an incremental
// request after one new message (incremental-ms); b.N counts rounds of
// both.
func BenchmarkSlidingSync(b *testing.B) {
	s := testserver.Start(b, nil)
	alice, bob := register(b, s, "alice"), register(b, s, "bob")
	var rooms []string
	for r := 0; r < 100; r++ {
		id := alice.do(b, "POST", "/createRoom", map[string]any{"preset": "public_chat", "name": fmt.Sprintf("room %d", r)})["room_id"].(string)
		bob.do(b, "POST", "/join/"+id, map[string]any{})
		for m := 0; m < 20; m++ {
			alice.do(b, "PUT", fmt.Sprintf("/rooms/%s/send/m.room.message/r%dm%d", id, r, m), map[string]any{"msgtype": "m.text", "body": "hello"})
		}
		rooms = append(rooms, id)
	}
	ss := *bob
	ss.base = strings.Replace(bob.base, "/v3", "/unstable/org.matrix.simplified_msc3575", 1)
	list := map[string]any{"conn_id": "room-list", "lists": map[string]any{"all": map[string]any{
		"ranges": [][]int{{0, 19}}, "timeline_limit": 1,
		"required_state": [][]string{{"m.room.name", ""}, {"m.room.avatar", ""}, {"m.room.encryption", ""},
			{"m.room.member", "$LAZY"}, {"m.room.member", "$ME"}, {"m.room.topic", ""}, {"m.room.canonical_alias", ""},
			{"m.room.power_levels", ""}, {"m.room.join_rules", ""}, {"m.room.create", ""}, {"m.room.tombstone", ""},
			{"m.room.history_visibility", ""}},
		"filters": map[string]any{"not_room_types": []string{"m.space"}}}},
		"extensions": map[string]any{"account_data": map[string]any{"enabled": true},
			"receipts": map[string]any{"enabled": true}, "typing": map[string]any{"enabled": true}}}
	var initial, incremental float64
	var wall time.Duration
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		t0 := cpuTime()
		first := ss.do(b, "POST", "/sync?timeout=0", list)
		t1 := cpuTime()
		if got := len(first["rooms"].(map[string]any)); got != 20 {
			b.Fatalf("initial response has %d rooms", got)
		}
		alice.do(b, "PUT", fmt.Sprintf("/rooms/%s/send/m.room.message/n%d", rooms[n%len(rooms)], n), map[string]any{"msgtype": "m.text", "body": "new"})
		t2 := cpuTime()
		w0 := time.Now()
		next := ss.do(b, "POST", "/sync?timeout=0&pos="+first["pos"].(string), map[string]any{"conn_id": "room-list"})
		wall += time.Since(w0)
		t3 := cpuTime()
		if len(next["rooms"].(map[string]any)) != 1 {
			b.Fatalf("incremental response: %v", next["rooms"])
		}
		initial += float64((t1 - t0).Microseconds()) / 1000
		incremental += float64((t3 - t2).Microseconds()) / 1000
	}
	b.ReportMetric(initial/float64(b.N), "initial-cpu-ms")
	b.ReportMetric(incremental/float64(b.N), "incremental-cpu-ms")
	b.ReportMetric(float64(wall.Microseconds())/1000/float64(b.N), "incremental-ms")
}

// BenchmarkSlidingSyncOverlappingLists: the largest request the server
// accepts, 50 lists of 10 ranges each spanning every room, each list with
// 100 required_state entries and no timeline, for a user in 100 rooms.
// Reports the server's CPU per request (cpu-ms): a room is configured once
// per list that holds it, not once per range.
func BenchmarkSlidingSyncOverlappingLists(b *testing.B) {
	s := testserver.Start(b, nil)
	alice := register(b, s, "alice")
	for r := 0; r < 100; r++ {
		alice.do(b, "POST", "/createRoom", map[string]any{"preset": "private_chat"})
	}
	ss := *alice
	ss.base = strings.Replace(alice.base, "/v3", "/unstable/org.matrix.simplified_msc3575", 1)
	lists := map[string]any{}
	for l := 0; l < 50; l++ {
		var ranges [][]int
		for r := 0; r < 10; r++ {
			ranges = append(ranges, []int{0, 1_000_000_000})
		}
		var state [][]string
		for k := 0; k < 100; k++ {
			state = append(state, []string{fmt.Sprintf("org.example.l%d", l), fmt.Sprint(k)})
		}
		lists[fmt.Sprint("l", l)] = map[string]any{"ranges": ranges, "required_state": state, "timeline_limit": 0}
	}
	var cpu float64
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		t0 := cpuTime()
		resp := ss.do(b, "POST", "/sync?timeout=0", map[string]any{"conn_id": fmt.Sprint("c", n%5), "lists": lists})
		cpu += float64((cpuTime() - t0).Microseconds()) / 1000
		if got := len(resp["rooms"].(map[string]any)); got != 100 {
			b.Fatalf("response has %d rooms", got)
		}
	}
	b.ReportMetric(cpu/float64(b.N), "cpu-ms")
}
