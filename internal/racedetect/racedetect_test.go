package racedetect

import (
	"testing"
	"time"
)

func TestScale(t *testing.T) {
	want := time.Second
	if Enabled {
		want = slowdown * time.Second
	}
	if got := Scale(time.Second); got != want {
		t.Fatalf("Scale(1s) = %v with the race detector %v, want %v", got, Enabled, want)
	}
}
