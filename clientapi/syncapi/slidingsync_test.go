package syncapi

import (
	"testing"

	"matrixhs/storage"
)

func TestStateSelector(t *testing.T) {
	sel := newStateSelector([][]string{{"m.room.name", ""}, {"m.room.member", "$ME"}, {"m.room.member", "$LAZY"},
		{"m.call.member", "*"}, {"*", "shared"}}, "@me:x")
	for _, tc := range []struct {
		typ, key string
		want     bool
	}{
		{"m.room.name", "", true},
		{"m.room.name", "other", false},
		{"m.room.member", "@me:x", true},
		{"m.room.member", "@you:x", false}, // only through $LAZY, for timeline senders
		{"m.call.member", "_@you:x_DEV", true},
		{"org.example", "shared", true},
		{"m.room.topic", "", false},
	} {
		if got := sel.matches(storage.StateKey{Type: tc.typ, StateKey: tc.key}); got != tc.want {
			t.Errorf("%s/%q: %v, want %v", tc.typ, tc.key, got, tc.want)
		}
	}
	if !sel.lazy {
		t.Error("$LAZY not seen")
	}
	if !newStateSelector([][]string{{"*", "*"}}, "@me:x").matches(storage.StateKey{Type: "a", StateKey: "b"}) {
		t.Error("[*, *] should match everything")
	}
}

func TestRoomConfigWidenAndWider(t *testing.T) {
	one, twenty := 1, 20
	list := ssRoomConfig{RequiredState: [][]string{{"m.room.name", ""}}, TimelineLimit: &one}
	sub := ssRoomConfig{RequiredState: [][]string{{"m.room.name", ""}, {"*", "*"}}, TimelineLimit: &twenty}
	w := list.widen(sub)
	if w.limit() != 20 || len(w.RequiredState) != 2 {
		t.Fatalf("widened = %+v (limit %d)", w, w.limit())
	}
	if !sub.wider(list) || list.wider(sub) || w.wider(w) {
		t.Fatal("wider should hold for more state or a longer timeline only")
	}
	huge := 10_000
	if (ssRoomConfig{TimelineLimit: &huge}).limit() != maxSSTimelineLimit {
		t.Fatal("timeline limit not capped")
	}
}
