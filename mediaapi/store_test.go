package mediaapi

import (
	"context"
	"errors"
	"matrixhs/internal/dbtest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"matrixhs/storage"
)

func TestUploadStoreStagesCommitsAndReleases(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := dbtest.Open(t, ctx, filepath.Join(dir, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := OpenStore(filepath.Join(dir, "media"))
	if err != nil {
		t.Fatal(err)
	}
	tmpEmpty := func() {
		t.Helper()
		if entries, _ := os.ReadDir(s.tmp); len(entries) != 0 {
			t.Fatalf("temporary files left: %v", entries)
		}
	}

	// Over the limit: refused, nothing left.
	if _, err := s.Stage(strings.NewReader("0123456789"), 9); !errors.Is(err, errTooLarge) {
		t.Fatalf("stage over limit: %v", err)
	}
	tmpEmpty()

	insert := func(id string, st *Staged, fail bool) error {
		return db.Write(ctx, func(tx *storage.Tx) error {
			err := tx.InsertMedia(ctx, storage.Media{Origin: "o", MediaID: id, UserID: "@u:o", CreatedTS: 1, UploadedTS: 1, Size: st.Size, SHA256: st.SHA256})
			if err != nil {
				return err
			}
			if err := s.Commit(tx, st); err != nil {
				return err
			}
			if fail {
				return errors.New("rolled back")
			}
			return nil
		})
	}
	st, err := s.Stage(strings.NewReader("hello"), 10)
	if err != nil || st.Size != 5 || st.SHA256 != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" || string(st.Head) != "hello" {
		t.Fatalf("staged %+v, %v", st, err)
	}
	// A rolled-back write leaves no file.
	if err := insert("a", st, true); err == nil {
		t.Fatal("write did not fail")
	}
	if _, err := os.Stat(s.Path(st.SHA256)); !os.IsNotExist(err) {
		t.Fatalf("file of a rolled-back upload kept: %v", err)
	}
	st, _ = s.Stage(strings.NewReader("hello"), 10)
	if err := insert("a", st, false); err != nil {
		t.Fatal(err)
	}
	st2, _ := s.Stage(strings.NewReader("hello"), 10)
	if err := insert("b", st2, false); err != nil {
		t.Fatal(err)
	}
	tmpEmpty()
	content, _, err := s.Walk()
	if err != nil || len(content) != 1 || content[0].SHA256 != st.SHA256 {
		t.Fatalf("store holds %+v, %v; want one file", content, err)
	}

	release := func(id string, fail bool) (int, error) {
		var n int
		err := db.Write(ctx, func(tx *storage.Tx) error {
			hashes, err := tx.DeleteMedia(ctx, "o", id)
			if err != nil {
				return err
			}
			if n, err = s.Release(ctx, tx, hashes); err != nil {
				return err
			}
			if fail {
				return errors.New("rolled back")
			}
			return nil
		})
		return n, err
	}
	// Still referenced by b: kept.
	if n, err := release("a", false); err != nil || n != 0 {
		t.Fatalf("release a = %d, %v", n, err)
	}
	// A rolled-back deletion puts the file back.
	if _, err := release("b", true); err == nil {
		t.Fatal("write did not fail")
	}
	if data, err := os.ReadFile(s.Path(st.SHA256)); err != nil || string(data) != "hello" {
		t.Fatalf("file after rolled-back release: %q, %v", data, err)
	}
	if n, err := release("b", false); err != nil || n != 1 {
		t.Fatalf("release b = %d, %v", n, err)
	}
	if _, err := os.Stat(s.Path(st.SHA256)); !os.IsNotExist(err) {
		t.Fatalf("unreferenced file kept: %v", err)
	}
	tmpEmpty()
	if s.Path("../../etc/passwd") == filepath.Join(s.content, "../../etc/passwd") {
		t.Fatal("Path must not follow traversal")
	}
}
