package fedinbound

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/tests/fedtest"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkInboundTransaction: hs1 sends hs2 transactions of 50 messages
// (one chain, built and signed beforehand), over TLS on loopback; it
// reports process CPU per PDU (hs2's processing: signature checks with
// the key ring, hashes, auth, persisting, and hs1's signing and sending
// of the request, both servers being in this process) and the time per
// transaction.
func BenchmarkInboundTransaction(b *testing.B) {
	const perTxn = 50
	s := newShared(b, nil)
	info := s.hs2.Room(b, s.roomID)
	ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersion(info.Version))
	auth := []string{
		s.hs2.StateID(b, s.roomID, spec.MRoomCreate, ""),
		s.hs2.StateID(b, s.roomID, spec.MRoomPowerLevels, ""),
		s.hs2.StateID(b, s.roomID, spec.MRoomMember, s.alice.ID),
	}
	by := s.hs1.Signer()
	prev, depth := info.Extremities, info.MaxDepth+1
	txns := make([][]json.RawMessage, b.N)
	for i := range txns {
		for j := 0; j < perTxn; j++ {
			content, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d of transaction %d, with some ordinary text", j, i)})
			pe := gomatrixserverlib.ProtoEvent{SenderID: s.alice.ID, RoomID: s.roomID, Type: "m.room.message",
				Content: content, PrevEvents: prev, AuthEvents: auth, Depth: depth}
			pdu, err := ver.NewEventBuilderFromProtoEvent(&pe).Build(time.Now(), by.Name, by.KeyID, by.Key)
			if err != nil {
				b.Fatal(err)
			}
			txns[i] = append(txns[i], pdu.JSON())
			prev, depth = []string{pdu.EventID()}, depth+1
		}
	}
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	for i, pdus := range txns {
		status, ans := fedtest.SendTxn(b, s.hs1, s.hs2.Name, fmt.Sprintf("bench%d", i), pdus, nil)
		if status != 200 || len(ans.PDUs) != perTxn {
			b.Fatalf("transaction %d: %d %s", i, status, ans.Raw)
		}
		for id, res := range ans.PDUs {
			if res.Error != "" {
				b.Fatalf("PDU %s: %s", id, res.Error)
			}
		}
	}
	elapsed, cpu := time.Since(t0), cpuTime()-cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N*perTxn), "cpu-ms/pdu")
	b.ReportMetric(float64(elapsed.Microseconds())/1000/float64(b.N), "ms/txn")
}
