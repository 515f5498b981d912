package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ThreadSubscription is a user's state for one thread (MSC4306).
// Subscribed false is an unsubscription, kept for its position.
type ThreadSubscription struct {
	Subscribed bool
	Automatic  bool
	StreamPos  int64
}

// ThreadSubscription returns the user's state for a thread, or ErrNotFound
// when they never subscribed.
func (tx *Tx) ThreadSubscription(ctx context.Context, userID, roomID, threadRoot string) (ThreadSubscription, error) {
	return threadSubscription(ctx, tx.q(), userID, roomID, threadRoot)
}

// ThreadSubscription reads it outside a write.
func (db *DB) ThreadSubscription(ctx context.Context, userID, roomID, threadRoot string) (ThreadSubscription, error) {
	return threadSubscription(ctx, db.q(), userID, roomID, threadRoot)
}

func threadSubscription(ctx context.Context, q querier, userID, roomID, threadRoot string) (ThreadSubscription, error) {
	var s ThreadSubscription
	err := q.QueryRowContext(ctx, `SELECT subscribed, automatic, stream_pos FROM thread_subscriptions
		WHERE user_id = $1 AND room_id = $2 AND thread_root = $3`, userID, roomID, threadRoot).Scan(&s.Subscribed, &s.Automatic, &s.StreamPos)
	if errors.Is(err, sql.ErrNoRows) {
		return s, ErrNotFound
	}
	if err != nil {
		return s, fmt.Errorf("reading thread subscription: %w", err)
	}
	return s, nil
}

// SetThreadSubscription records a subscription or unsubscription at a new
// stream position.
func (tx *Tx) SetThreadSubscription(ctx context.Context, userID, roomID, threadRoot string, subscribed, automatic bool) error {
	tx.WakeUsers(userID)
	_, err := tx.exec(ctx, `INSERT INTO thread_subscriptions (user_id, room_id, thread_root, subscribed, automatic, stream_pos)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (user_id, room_id, thread_root) DO UPDATE SET subscribed = excluded.subscribed,
			automatic = excluded.automatic, stream_pos = excluded.stream_pos`,
		userID, roomID, threadRoot, subscribed, automatic, tx.NextStreamPos())
	if err != nil {
		return fmt.Errorf("saving thread subscription: %w", err)
	}
	return nil
}

// ThreadSubscribers is the set of users subscribed to a thread.
func (db *DB) ThreadSubscribers(ctx context.Context, roomID, threadRoot string) (map[string]bool, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT user_id FROM thread_subscriptions
		WHERE room_id = $1 AND thread_root = $2 AND subscribed = 1`, roomID, threadRoot)
	if err != nil {
		return nil, fmt.Errorf("listing thread subscribers: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out[u] = true
	}
	return out, rows.Err()
}
