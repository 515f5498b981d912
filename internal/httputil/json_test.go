package httputil

import (
	"errors"
	"strings"
	"testing"
)

func TestJSONDepth(t *testing.T) {
	for body, want := range map[string]int{
		`{}`:                  1,
		`{"a":[1,{"b":[]}]}`:  4,
		`{"s":"[[[{{{\"]]]"}`: 1,
		`{"s":"\\","t":[[]]}`: 3,
		`[[],[[]],[]]`:        3,
		`"no containers"`:     0,
		strings.Repeat(`[`, 5) + `1` + strings.Repeat(`]`, 5): 5,
	} {
		if got := jsonDepth([]byte(body)); got != want {
			t.Errorf("jsonDepth(%s) = %d, want %d", body, got, want)
		}
	}
}

// Bodies nested deeper than MaxJSONDepth are refused: SQLite's JSON
// functions fail on content deeper than 1,000 levels, so one stored event
// like that broke the public room directory for everyone.
func TestUnmarshalRefusesDeepNesting(t *testing.T) {
	var dst map[string]any
	ok := strings.Repeat(`{"a":`, MaxJSONDepth-1) + `{}` + strings.Repeat(`}`, MaxJSONDepth-1)
	if err := Unmarshal([]byte(ok), &dst); err != nil {
		t.Fatalf("depth %d refused: %v", MaxJSONDepth, err)
	}
	deep := strings.Repeat(`{"a":`, 3000) + `1` + strings.Repeat(`}`, 3000)
	var he *Error
	if err := Unmarshal([]byte(deep), &dst); !errors.As(err, &he) || he.Status != 400 || he.Code != "M_BAD_JSON" {
		t.Fatalf("depth 3000: %v", err)
	}
}
