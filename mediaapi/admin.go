package mediaapi

import (
	"context"
	"errors"
	"os"
	"sort"
	"time"

	"matrixhs/storage"
)

// staleTempAge is when a temporary upload file is surely abandoned.
const staleTempAge = 24 * time.Hour

// PurgeOptions selects the media to delete: created before Before (when
// not zero) and uploaded by UserID (when not ""). Both set means both must
// hold. Expired, never-completed async uploads are always purged.
type PurgeOptions struct {
	Before time.Time
	UserID string
}

// PurgeResult counts what a purge removed.
type PurgeResult struct {
	Media    int   // media rows (with their thumbnails)
	Files    int   // files no longer referenced by anything
	Previews int64 // cached URL previews (only with Before)
}

// Purge deletes media rows and the files nothing references any more. It
// is safe beside a running server: every deletion runs inside a database
// write, which SQLite serialises with the server's uploads.
func Purge(ctx context.Context, db *storage.DB, store *Store, opts PurgeOptions, now time.Time) (PurgeResult, error) {
	var res PurgeResult
	var before int64
	if !opts.Before.IsZero() {
		before = opts.Before.UnixMilli()
	}
	keys, err := db.MediaToPurge(ctx, before, opts.UserID, now.UnixMilli())
	if err != nil {
		return res, err
	}
	for _, k := range keys {
		files, err := deleteMediaRow(ctx, db, store, k.Origin, k.MediaID)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return res, err
		}
		res.Media++
		res.Files += files
	}
	if before != 0 {
		err := db.Write(ctx, func(tx *storage.Tx) error {
			n, err := tx.DeleteURLPreviews(ctx, before)
			res.Previews = n
			return err
		})
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// CheckResult compares the store with the database.
type CheckResult struct {
	Files      int          // content files on disk
	Referenced int          // distinct content hashes in the database
	Orphans    []StoredFile // files nothing references (or not named like content)
	Missing    []string     // hashes referenced but absent from disk
	StaleTemp  []StoredFile // temporary files older than a day
}

// Check reports orphan files, missing files and abandoned temporary files.
func Check(ctx context.Context, db *storage.DB, store *Store, now time.Time) (*CheckResult, error) {
	// Read the references first: content committed after this is newer than
	// the walk can have missed, and at worst shows up as an orphan that a
	// repair re-checks before deleting.
	refs, err := db.ReferencedContent(ctx)
	if err != nil {
		return nil, err
	}
	content, temp, err := store.Walk()
	if err != nil {
		return nil, err
	}
	res := &CheckResult{Files: len(content), Referenced: len(refs)}
	onDisk := map[string]bool{}
	for _, f := range content {
		if f.SHA256 == "" || !refs[f.SHA256] {
			res.Orphans = append(res.Orphans, f)
		}
		if f.SHA256 != "" {
			onDisk[f.SHA256] = true
		}
	}
	for h := range refs {
		if !onDisk[h] {
			res.Missing = append(res.Missing, h)
		}
	}
	sort.Strings(res.Missing)
	for _, f := range temp {
		if now.Sub(f.ModTime) > staleTempAge {
			res.StaleTemp = append(res.StaleTemp, f)
		}
	}
	return res, nil
}

// Repair deletes the orphans and stale temporary files of a check. Each
// orphan is re-checked inside a write before it goes.
func Repair(ctx context.Context, db *storage.DB, store *Store, res *CheckResult) (int, error) {
	n := 0
	for _, f := range res.Orphans {
		if f.SHA256 == "" {
			if err := os.Remove(f.Path); err == nil {
				n++
			}
			continue
		}
		var removed int
		err := db.Write(ctx, func(tx *storage.Tx) error {
			var err error
			removed, err = store.Release(ctx, tx, []string{f.SHA256})
			return err
		})
		if err != nil {
			return n, err
		}
		n += removed
	}
	for _, f := range res.StaleTemp {
		if err := os.Remove(f.Path); err == nil {
			n++
		}
	}
	return n, nil
}

// deleteMediaRow removes one media row with its thumbnails, and the files
// nothing references any more (counted); ErrNotFound if there is no row.
func deleteMediaRow(ctx context.Context, db *storage.DB, store *Store, origin, mediaID string) (int, error) {
	var files int
	err := db.Write(ctx, func(tx *storage.Tx) error {
		hashes, err := tx.DeleteMedia(ctx, origin, mediaID)
		if err != nil {
			return err
		}
		files, err = store.Release(ctx, tx, hashes)
		return err
	})
	return files, err
}
