package config

import (
	"sort"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib"
)

// RoomVersions lists the room versions this server offers, in numeric
// order: the spec's stable versions. gomatrixserverlib also marks some
// experimental, namespaced versions stable; those are not offered.
func RoomVersions() []string {
	var out []string
	for v, impl := range gomatrixserverlib.RoomVersions() {
		if impl.Stable() && isSpecRoomVersion(string(v)) {
			out = append(out, string(v))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := strconv.Atoi(out[i])
		b, _ := strconv.Atoi(out[j])
		return a < b
	})
	return out
}

// SupportedRoomVersion reports whether v is one of RoomVersions.
func SupportedRoomVersion(v string) bool {
	if !isSpecRoomVersion(v) {
		return false
	}
	impl, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(v))
	return err == nil && impl.Stable()
}

// isSpecRoomVersion reports whether v is a plain number, as the spec's
// room versions are.
func isSpecRoomVersion(v string) bool {
	if v == "" {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
