package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"matrixhs/mediaapi"
	"matrixhs/storage"
)

// addMedia stores content as an uploaded media row, the way uploads do.
func addMedia(t *testing.T, db *storage.DB, store *mediaapi.Store, id, user, content string, created time.Time) string {
	t.Helper()
	ctx := context.Background()
	st, err := store.Stage(strings.NewReader(content), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Write(ctx, func(tx *storage.Tx) error {
		err := tx.InsertMedia(ctx, storage.Media{Origin: "cli.test", MediaID: id, UserID: user,
			CreatedTS: created.UnixMilli(), UploadedTS: created.UnixMilli(), ContentType: "text/plain",
			Size: st.Size, SHA256: st.SHA256})
		if err != nil {
			return err
		}
		return store.Commit(tx, st)
	})
	if err != nil {
		t.Fatal(err)
	}
	return st.SHA256
}

func TestMediaCommands(t *testing.T) {
	dir := setupEnv(t)
	ctx := context.Background()
	db, err := storage.Open(ctx, filepath.Join(dir, "homeserver.db"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := mediaapi.OpenStore(filepath.Join(dir, "media"))
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-40 * 24 * time.Hour)
	shared := addMedia(t, db, store, "old1", "@alice:cli.test", "shared bytes", old)
	addMedia(t, db, store, "new1", "@bob:cli.test", "shared bytes", time.Now())
	oldOnly := addMedia(t, db, store, "old2", "@bob:cli.test", "old bytes", old)
	aliceNew := addMedia(t, db, store, "new2", "@alice:cli.test", "alice bytes", time.Now())
	db.Close()

	if code, _, errOut := cli(t, "", "media", "purge"); code != 1 || !strings.Contains(errOut, "-older-than") {
		t.Fatalf("purge without a filter: %d %q", code, errOut)
	}
	code, out, errOut := cli(t, "", "media", "check")
	if code != 0 || !strings.Contains(out, "3 files on disk") || !strings.Contains(out, "0 orphan, 0 missing") {
		t.Fatalf("clean check: %d %q %q", code, out, errOut)
	}

	// Older than 30 days: old1 and old2 go; old1's bytes stay (new1 shares them).
	code, out, errOut = cli(t, "", "media", "purge", "-older-than", "720h")
	if code != 0 || !strings.Contains(out, "purged 2 media, deleted 1 files") {
		t.Fatalf("purge -older-than: %d %q %q", code, out, errOut)
	}
	if _, err := os.Stat(store.Path(shared)); err != nil {
		t.Fatalf("shared content deleted: %v", err)
	}
	if _, err := os.Stat(store.Path(oldOnly)); !os.IsNotExist(err) {
		t.Fatalf("unshared old content kept: %v", err)
	}

	// By user (a local name works too).
	code, out, errOut = cli(t, "", "media", "purge", "-user", "alice")
	if code != 0 || !strings.Contains(out, "purged 1 media, deleted 1 files") {
		t.Fatalf("purge -user: %d %q %q", code, out, errOut)
	}
	if _, err := os.Stat(store.Path(aliceNew)); !os.IsNotExist(err) {
		t.Fatalf("alice's content kept: %v", err)
	}

	// An orphan file and a missing file are both reported.
	orphan := filepath.Join(dir, "media", "content", "ab", "cd", "abcd"+strings.Repeat("0", 60))
	os.MkdirAll(filepath.Dir(orphan), 0o700)
	os.WriteFile(orphan, []byte("orphan"), 0o600)
	os.Remove(store.Path(shared))
	code, out, _ = cli(t, "", "media", "check")
	if code != 1 || !strings.Contains(out, "orphan file (not referenced): "+orphan) ||
		!strings.Contains(out, "missing file (referenced, not on disk): "+store.Path(shared)) {
		t.Fatalf("check with problems: %d %q", code, out)
	}
	code, out, _ = cli(t, "", "media", "check", "-delete-orphans")
	if !strings.Contains(out, "deleted 1 files") {
		t.Fatalf("check -delete-orphans: %d %q", code, out)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatalf("orphan kept: %v", err)
	}
	if code, _, errOut := cli(t, "", "media", "frob"); code != 1 || !strings.Contains(errOut, "unknown media subcommand") {
		t.Fatalf("unknown subcommand: %d %q", code, errOut)
	}
}
