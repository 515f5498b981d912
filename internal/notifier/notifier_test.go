package notifier

import "testing"

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestWakesOnlyListenersConcerned(t *testing.T) {
	n := New()
	seq := n.Seq()
	alice, stopA := n.Listen("@alice:x", []int64{1, 2}, seq)
	bob, stopB := n.Listen("@bob:x", []int64{3}, seq)
	defer stopA()
	defer stopB()
	n.Wake(Targets{Rooms: []int64{1}})
	if !closed(alice) {
		t.Fatal("alice, in room 1, was not woken")
	}
	if closed(bob) {
		t.Fatal("bob, not in room 1, was woken")
	}
	n.Wake(Targets{Users: []string{"@bob:x"}})
	if !closed(bob) {
		t.Fatal("bob was not woken for his own change")
	}
	if n.Wakeups("@alice:x") != 1 || n.Wakeups("@bob:x") != 1 {
		t.Fatalf("wakeups %d %d", n.Wakeups("@alice:x"), n.Wakeups("@bob:x"))
	}
}

// A change between taking the sequence and listening is not missed.
func TestChangeBeforeListeningWakesAtOnce(t *testing.T) {
	n := New()
	seq := n.Seq()
	n.Wake(Targets{Rooms: []int64{7}})
	ch, stop := n.Listen("@u:x", []int64{7}, seq)
	defer stop()
	if !closed(ch) {
		t.Fatal("a change after Seq was missed")
	}
	// A listener that took the sequence after the change waits.
	ch, stop2 := n.Listen("@u:x", []int64{7}, n.Seq())
	defer stop2()
	if closed(ch) {
		t.Fatal("woken by an old change")
	}
	n.Wake(Targets{All: true})
	if !closed(ch) {
		t.Fatal("All did not wake")
	}
}

func TestStopUnregisters(t *testing.T) {
	n := New()
	_, stop := n.Listen("@u:x", []int64{1}, n.Seq())
	stop()
	if len(n.byUser) != 0 || len(n.byRoom) != 0 {
		t.Fatalf("listener left behind: %v %v", n.byUser, n.byRoom)
	}
	n.Wake(Targets{Rooms: []int64{1}})
	if n.Wakeups("@u:x") != 0 {
		t.Fatal("a stopped listener was woken")
	}
}
