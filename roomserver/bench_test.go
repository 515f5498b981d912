package roomserver

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPipelineSend measures the event pipeline without HTTP: build,
// sign, authorise, push rules for 5 recipients, persist, with 6 concurrent
// senders into one room. Reports CPU per message.
func BenchmarkPipelineSend(b *testing.B) {
	ctx := context.Background()
	rs, _ := openRoomserver(b)
	users := []string{"@u0:a.test", "@u1:a.test", "@u2:a.test", "@u3:a.test", "@u4:a.test", "@u5:a.test"}
	roomID, err := rs.CreateRoom(ctx, CreateRoomRequest{Creator: users[0], Version: "12", Preset: PresetPublicChat})
	if err != nil {
		b.Fatal(err)
	}
	for _, u := range users[1:] {
		if _, err := rs.SetMembership(ctx, MembershipRequest{RoomID: roomID, Sender: u, Target: u, Membership: "join"}); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := cpuNow()
	for _, u := range users {
		wg.Add(1)
		go func(u string) {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": fmt.Sprintf("message %d", i)})
				if _, err := rs.Send(ctx, LocalEvent{RoomID: roomID, Sender: u, Type: "m.room.message", Content: content}); err != nil {
					b.Error(err)
					return
				}
			}
		}(u)
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64((cpuNow()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/msg")
}

// BenchmarkRoomHeadMemory reports the heap a cached room head costs: rooms
// of 5 members with the usual state are created, the caches dropped (a new
// Roomserver on the same database), and every head loaded again.
func BenchmarkRoomHeadMemory(b *testing.B) {
	ctx := context.Background()
	rs, db := openRoomserver(b)
	const rooms = 1000
	users := []string{"@u0:a.test", "@u1:a.test", "@u2:a.test", "@u3:a.test", "@u4:a.test"}
	ids := make([]string, 0, rooms)
	for i := 0; i < rooms; i++ {
		name := fmt.Sprintf("room %d", i)
		id, err := rs.CreateRoom(ctx, CreateRoomRequest{Creator: users[0], Version: "11", Preset: PresetPublicChat, Name: &name})
		if err != nil {
			b.Fatal(err)
		}
		for _, u := range users[1:] {
			if _, err := rs.SetMembership(ctx, MembershipRequest{RoomID: id, Sender: u, Target: u, Membership: "join"}); err != nil {
				b.Fatal(err)
			}
		}
		ids = append(ids, id)
	}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		fresh := New(db, Options{ServerName: "a.test", KeyID: "ed25519:a", PrivateKey: rs.key, RoomCacheSize: rooms})
		before := heapInUse()
		for _, id := range ids {
			if _, err := fresh.room(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
		after := heapInUse()
		b.ReportMetric(float64(after-before)/rooms, "heap-B/room")
		runtime.KeepAlive(fresh)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
