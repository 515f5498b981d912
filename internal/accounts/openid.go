package accounts

import (
	"context"
	"errors"
	"time"

	"matrixhs/storage"
)

// OpenIDTokenLifetime is how long an OpenID token proves its user's identity.
const OpenIDTokenLifetime = time.Hour

// IssueOpenIDToken makes a token a third party can exchange, through the
// federation API's /openid/userinfo, for the user's ID (and nothing else).
func (s *Service) IssueOpenIDToken(ctx context.Context, userID string) (string, error) {
	token := randomToken("oid_", 24)
	now := s.now()
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		return tx.InsertOpenIDToken(ctx, hashToken(token), userID, now.Add(OpenIDTokenLifetime).UnixMilli(), now.UnixMilli())
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// OpenIDUser is the user an unexpired OpenID token was issued to (401
// M_UNKNOWN_TOKEN otherwise).
func (s *Service) OpenIDUser(ctx context.Context, token string) (string, error) {
	userID, err := s.db.OpenIDTokenOwner(ctx, hashToken(token), s.now().UnixMilli())
	if errors.Is(err, storage.ErrNotFound) {
		return "", refuse(ErrUnknownToken, "Unknown or expired OpenID token")
	}
	return userID, err
}
