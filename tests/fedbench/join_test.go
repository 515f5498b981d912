package fedbench

import (
	"context"
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/accounts"
	"matrixhs/roomserver"
	"matrixhs/tests/fedtest"
)

// largeRoomMembers is the member count of the room joined.
const largeRoomMembers = 1000

// largeRoom makes a public room on hs1 whose state has members joined
// users: those of the other servers given (joining over federation, while
// the room is small) and the rest users of hs1 (registered and joined
// through hs1's roomserver, several at a time so their writes share
// commits). It returns the room ID.
func largeRoom(b *testing.B, hs1 *fedtest.Server, members int, remote ...*fedtest.Server) string {
	b.Helper()
	ctx := context.Background()
	owner := newUser(b, hs1, "owner")
	room := owner.createRoom(b, map[string]any{"preset": "public_chat", "name": "Large room"})
	joined := 1
	for i, hs := range remote {
		u := newUser(b, hs, fmt.Sprintf("remote%d", i))
		u.join(b, room, hs1.Name)
		joined++
	}
	local := members - joined
	errs := make(chan error, local)
	parallel(local, 8, func(i int) {
		localpart := fmt.Sprintf("member%04d", i)
		login, err := hs1.Accounts.Register(ctx, accounts.Registration{Localpart: localpart, Password: "pw"})
		if err == nil {
			_, err = hs1.Rooms.SetMembership(ctx, roomserver.MembershipRequest{
				RoomID: room, Sender: login.UserID, Target: login.UserID, Membership: spec.Join,
				DisplayName: "Member " + localpart,
			})
		}
		if err != nil {
			errs <- err
		}
	})
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("building the room: %v", err)
	}
	return room
}

// BenchmarkJoinLargeRoom: a user of a fresh server joins a public room on
// hs1 whose state holds 1,000 joined members (990 users of hs1, 10 of
// hs3), through make_join and send_join v2 without omitted members: the
// joining server checks every state and auth chain event's signatures
// through its key ring (fetching hs1's and hs3's keys), checks each one's
// auth events, and stores the state. Reported per join:
//   - join-s: the client's POST /join, start to answer;
//   - cpu-s: process CPU during the join (both servers: hs1 serves
//     send_join too);
//   - heap-peak-MB: the highest live+garbage heap in use during the join
//     (runtime HeapInuse sampled every 10 ms) minus the heap in use
//     before it (after a GC), for the whole process;
//   - heap-kept-MB: the heap in use after the join and a GC minus before;
//   - rss-peak-MB: the process's peak resident set during the join
//     (VmHWM, reset before it) minus its resident set before.
//
// All servers run in this process, so the memory figures include hs1's
// share of the join (reading the state and auth chain and answering
// send_join), and are upper bounds for the joining server.
//
//	go test -tags goolm ./tests/fedbench -run x -bench JoinLargeRoom -benchtime 3x
func BenchmarkJoinLargeRoom(b *testing.B) {
	n := fedtest.NewNetwork(b)
	hs1, hs3 := startServer(n, "hs1"), startServer(n, "hs3")
	remote := make([]*fedtest.Server, 10)
	for i := range remote {
		remote[i] = hs3
	}
	room := largeRoom(b, hs1, largeRoomMembers, remote...)
	if got := joinedCount(b, hs1, room); got != largeRoomMembers {
		b.Fatalf("the room has %d members", got)
	}
	// hs3 takes the joins of hs1's users in the background; the joins
	// measured start once it has them all.
	waitUntil(b, "hs3 to hold every join", time.Minute, func() bool { return joinedCount(b, hs3, room) == largeRoomMembers })
	var heapPeak, heapKept, rssPeak float64
	var cpu, wall time.Duration
	rssOK := true
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		hs := startServer(n, fmt.Sprintf("joiner%d", i))
		u := newUser(b, hs, "newcomer")
		before := heapInuseAfterGC()
		debug.FreeOSMemory() // so the resident set starts from the live heap
		rss0 := procStatusMB("VmRSS")
		rssOK = resetPeakRSS() && rssOK
		sampler := sampleHeap()
		cpu0, t0 := cpuTime(), time.Now()
		stopProfile := profileTimed(b, i)
		b.StartTimer()
		u.join(b, room, hs1.Name)
		b.StopTimer()
		stopProfile()
		wall += time.Since(t0)
		cpu += cpuTime() - cpu0
		peak := sampler.Stop()
		rssPeak += procStatusMB("VmHWM") - rss0
		heapPeak += float64(peak-min(peak, before)) / mb
		after := heapInuseAfterGC()
		heapKept += (float64(after) - float64(before)) / mb
		if got := joinedCount(b, hs, room); got != largeRoomMembers+1 {
			b.Fatalf("the joining server holds %d members", got)
		}
		// The newcomer leaves again, and the other servers have the leave,
		// before the next join is measured: the room is back to 1,000
		// members and nobody sends to the stopped server.
		u.do(b, "POST", roomPath(room, "/leave"), map[string]any{}, nil)
		for _, other := range []*fedtest.Server{hs1, hs3} {
			waitUntil(b, string(other.Name)+" to have the leave", time.Minute, func() bool { return joinedCount(b, other, room) == largeRoomMembers })
		}
		hs.Stop()
	}
	per := float64(b.N)
	b.ReportMetric(wall.Seconds()/per, "join-s")
	b.ReportMetric(cpu.Seconds()/per, "cpu-s")
	b.ReportMetric(heapPeak/per, "heap-peak-MB")
	b.ReportMetric(heapKept/per, "heap-kept-MB")
	if rssOK {
		b.ReportMetric(rssPeak/per, "rss-peak-MB")
	}
}

// joinedCount is the number of joined members in a server's current state
// of the room.
func joinedCount(b *testing.B, hs *fedtest.Server, roomID string) int {
	b.Helper()
	info, err := hs.DB.Room(context.Background(), roomID)
	if err != nil {
		b.Fatalf("room on %s: %v", hs.Name, err)
	}
	members, err := hs.DB.JoinedMembers(context.Background(), info.NID)
	if err != nil {
		b.Fatal(err)
	}
	return len(members)
}
