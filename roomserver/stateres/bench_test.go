package stateres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver/internal/dagtest"
	"matrixhs/roomserver/stateres"
)

// largeFork is a room with 1,000 members on ten servers, forked: one side
// changes the power levels, bans a member and renames the room; the other
// kicks a member, lets three people join and changes the topic.
func largeFork(b *testing.B, version string) (*testRoom, []dagtest.State) {
	r := newTestRoom(b, version)
	servers := make([]*dagtest.Server, 10)
	for i := range servers {
		servers[i] = dagtest.NewServer(fmt.Sprintf("s%d.test", i))
	}
	admin, mod := "@admin:s0.test", "@mod:s1.test"
	create := map[string]any{"room_version": version}
	if r.Ver.CreatorInCreateEvent() {
		create["creator"] = admin
	}
	ev := r.ev(servers[0], admin, spec.MRoomCreate, sk(""), create, dagtest.State{})
	on := func(srv *dagtest.Server, sender, typ, stateKey string, content map[string]any) {
		ev = r.ev(srv, sender, typ, sk(stateKey), content, r.After(ev), ev)
	}
	on(servers[0], admin, spec.MRoomMember, admin, map[string]any{"membership": "join"})
	users := map[string]any{mod: 50}
	if !r.Ver.PrivilegedCreators() {
		users[admin] = 100
	}
	on(servers[0], admin, spec.MRoomPowerLevels, "", map[string]any{"users": users})
	on(servers[0], admin, spec.MRoomJoinRules, "", map[string]any{"join_rule": "public"})
	on(servers[1], mod, spec.MRoomMember, mod, map[string]any{"membership": "join"})
	member := func(i int) (string, *dagtest.Server) {
		return fmt.Sprintf("@m%d:s%d.test", i, i%10), servers[i%10]
	}
	for i := range 1000 {
		u, srv := member(i)
		on(srv, u, spec.MRoomMember, u, map[string]any{"membership": "join"})
	}
	base := ev

	users[fmt.Sprintf("@m%d:s%d.test", 5, 5)] = 50
	on(servers[0], admin, spec.MRoomPowerLevels, "", map[string]any{"users": users})
	banned, _ := member(7)
	on(servers[0], admin, spec.MRoomMember, banned, map[string]any{"membership": "ban"})
	on(servers[0], admin, "m.room.name", "", map[string]any{"name": "big"})
	sideA := ev

	ev = base
	kicked, _ := member(9)
	on(servers[1], mod, spec.MRoomMember, kicked, map[string]any{"membership": "leave"})
	for i := 1000; i < 1003; i++ {
		u, srv := member(i)
		on(srv, u, spec.MRoomMember, u, map[string]any{"membership": "join"})
	}
	on(servers[1], mod, spec.MRoomTopic, "", map[string]any{"topic": "busy"})
	return r, []dagtest.State{r.After(sideA), r.After(ev)}
}

// BenchmarkResolveLargeRoom resolves largeFork with the auth chains given
// up front; gomatrixserverlib's v2 resolver (v11) for comparison.
func BenchmarkResolveLargeRoom(b *testing.B) {
	ctx := context.Background()
	for _, version := range []string{"11", "12"} {
		r, states := largeFork(b, version)
		in := stateres.Input{StateSets: sets(states...), AuthEvents: r.chain(states...)}
		b.Run("v"+version, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := stateres.Resolve(ctx, r.Ver, in); err != nil {
					b.Fatal(err)
				}
			}
		})
		if version == "11" {
			b.Run("v11/gomatrixserverlib", func(b *testing.B) {
				userIDForSender := func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) { return spec.NewUserID(string(s), true) }
				b.ReportAllocs()
				for b.Loop() {
					if _, err := gomatrixserverlib.ResolveConflictsNew(r.Ver.Version(), in.StateSets, in.AuthEvents, userIDForSender, func(string) bool { return false }); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
