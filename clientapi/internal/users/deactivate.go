package users

import (
	"context"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver"
)

// Deactivate deactivates an account (erasing its profile when erase),
// logs out every device and takes the user out of their rooms: joined
// rooms are left, invites and knocks withdrawn.
func (us *Service) Deactivate(ctx context.Context, userID string, erase bool) error {
	if err := us.accounts.Deactivate(ctx, userID, erase); err != nil {
		return err
	}
	memberships, err := us.db.MembershipsAt(ctx, userID, us.db.StreamPosition())
	if err != nil {
		return err
	}
	for _, m := range memberships {
		switch m.Membership {
		case spec.Join, spec.Invite, spec.Knock:
			_, err := us.rooms.SetMembership(ctx, roomserver.MembershipRequest{
				RoomID: m.RoomID, Sender: userID, Target: userID, Membership: spec.Leave,
			})
			if err != nil {
				us.log.WithError(err).WithField("room_id", m.RoomID).Warn("Leaving a room on deactivation")
			}
		}
	}
	return nil
}
