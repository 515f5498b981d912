package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

func getPushRules(ctx context.Context, q querier, userID string) ([]byte, error) {
	var rules string
	err := q.QueryRowContext(ctx, `SELECT rules FROM push_rules WHERE user_id = $1`, userID).Scan(&rules)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading push rules: %w", err)
	}
	return []byte(rules), nil
}

// PushRules returns the user's stored push-rule document, or nil when the
// user never changed a rule.
func (db *DB) PushRules(ctx context.Context, userID string) ([]byte, error) {
	return getPushRules(ctx, db.q(), userID)
}

// PushRules reads the document inside the write, for read-modify-write.
func (tx *Tx) PushRules(ctx context.Context, userID string) ([]byte, error) {
	return getPushRules(ctx, tx.q(), userID)
}

// PutPushRules replaces the user's push-rule document.
func (tx *Tx) PutPushRules(ctx context.Context, userID string, rules []byte) (int64, error) {
	pos := tx.NextStreamPos()
	tx.WakeUsers(userID)
	_, err := tx.exec(ctx, `INSERT INTO push_rules (user_id, rules, stream_pos) VALUES ($1, $2, $3)
		ON CONFLICT (user_id) DO UPDATE SET rules = excluded.rules, stream_pos = excluded.stream_pos`, userID, string(rules), pos)
	if err != nil {
		return 0, fmt.Errorf("saving push rules: %w", err)
	}
	return pos, nil
}
