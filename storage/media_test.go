package storage

import (
	"context"
	"errors"
	"testing"
)

func TestMediaRows(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	up := Media{Origin: "hs", MediaID: "a", UserID: "@u:hs", CreatedTS: 10, UploadedTS: 10,
		ContentType: "image/png", UploadName: "a.png", Size: 100, SHA256: "h1", ThumbState: ThumbOK}
	mustWrite(t, db, func(tx *Tx) error { return tx.InsertMedia(ctx, up) })
	if err := db.Write(ctx, func(tx *Tx) error { return tx.InsertMedia(ctx, up) }); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate media err = %v, want ErrExists", err)
	}
	got, err := db.Media(ctx, "hs", "a")
	if err != nil || *got != up {
		t.Fatalf("Media = %+v, %v; want %+v", got, err, up)
	}
	if _, err := db.Media(ctx, "other", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("media of another origin: %v", err)
	}

	// A pending async upload is completed once.
	pend := Media{Origin: "hs", MediaID: "p", UserID: "@u:hs", CreatedTS: 20, UnusedExpiresTS: 1000}
	mustWrite(t, db, func(tx *Tx) error { return tx.InsertMedia(ctx, pend) })
	mustWrite(t, db, func(tx *Tx) error {
		n, err := tx.PendingMediaCount(ctx, "@u:hs", 500)
		if err != nil || n != 1 {
			t.Errorf("pending count = %d, %v; want 1", n, err)
		}
		n, _ = tx.PendingMediaCount(ctx, "@u:hs", 1000)
		if n != 0 {
			t.Errorf("pending count after expiry = %d, want 0", n)
		}
		return nil
	})
	done := pend
	done.UploadedTS, done.ContentType, done.Size, done.SHA256 = 30, "text/plain", 5, "h1"
	mustWrite(t, db, func(tx *Tx) error { return tx.CompleteMedia(ctx, done) })
	if err := db.Write(ctx, func(tx *Tx) error { return tx.CompleteMedia(ctx, done) }); !errors.Is(err, ErrExists) {
		t.Fatalf("second completion err = %v, want ErrExists", err)
	}
	missing := done
	missing.MediaID = "nope"
	if err := db.Write(ctx, func(tx *Tx) error { return tx.CompleteMedia(ctx, missing) }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("completion of unknown media err = %v, want ErrNotFound", err)
	}
	got, _ = db.Media(ctx, "hs", "p")
	if got.Pending() || got.SHA256 != "h1" || got.UnusedExpiresTS != 0 || got.Size != 5 {
		t.Fatalf("completed media = %+v", got)
	}
	if n, err := db.MediaUsage(ctx, "@u:hs"); err != nil || n != 105 {
		t.Fatalf("usage = %d, %v; want 105", n, err)
	}

	// Thumbnails reference content too and go with their media.
	th := MediaThumbnail{Origin: "hs", MediaID: "a", ReqWidth: 32, ReqHeight: 32, Method: "crop",
		Width: 32, Height: 32, ContentType: "image/png", Size: 9, SHA256: "t1", CreatedTS: 11}
	mustWrite(t, db, func(tx *Tx) error { return tx.PutMediaThumbnail(ctx, th) })
	mustWrite(t, db, func(tx *Tx) error { return tx.PutMediaThumbnail(ctx, th) })
	ths, err := db.MediaThumbnails(ctx, "hs", "a")
	if err != nil || len(ths) != 1 || ths[0] != th {
		t.Fatalf("thumbnails = %+v, %v", ths, err)
	}
	refs, err := db.ReferencedContent(ctx)
	if err != nil || len(refs) != 2 || !refs["h1"] || !refs["t1"] {
		t.Fatalf("referenced = %v, %v", refs, err)
	}

	// Purge selection: by age, by user, and expired pending uploads always.
	mustWrite(t, db, func(tx *Tx) error {
		return tx.InsertMedia(ctx, Media{Origin: "hs", MediaID: "old", UserID: "@v:hs", CreatedTS: 1, UnusedExpiresTS: 5})
	})
	keys, err := db.MediaToPurge(ctx, 15, "", 100)
	if err != nil || len(keys) != 2 || keys[0].MediaID != "old" || keys[1].MediaID != "a" {
		t.Fatalf("purge older than 15 = %v, %v", keys, err)
	}
	keys, _ = db.MediaToPurge(ctx, 0, "@u:hs", 2)
	if len(keys) != 2 {
		t.Fatalf("purge of @u:hs = %v", keys)
	}
	keys, _ = db.MediaToPurge(ctx, 0, "", 100)
	if len(keys) != 1 || keys[0].MediaID != "old" {
		t.Fatalf("purge without filters must only pick expired pending uploads: %v", keys)
	}

	mustWrite(t, db, func(tx *Tx) error {
		hashes, err := tx.DeleteMedia(ctx, "hs", "a")
		if err != nil {
			return err
		}
		if len(hashes) != 2 {
			t.Errorf("deleted hashes = %v", hashes)
		}
		if ref, _ := tx.ContentReferenced(ctx, "t1"); ref {
			t.Errorf("thumbnail content still referenced after delete")
		}
		if ref, _ := tx.ContentReferenced(ctx, "h1"); !ref {
			t.Errorf("shared content h1 must stay referenced by media p")
		}
		return nil
	})
	if ths, _ := db.MediaThumbnails(ctx, "hs", "a"); len(ths) != 0 {
		t.Fatalf("thumbnails survived their media: %v", ths)
	}
	if err := db.Write(ctx, func(tx *Tx) error { _, err := tx.DeleteMedia(ctx, "hs", "a"); return err }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete err = %v", err)
	}
}

func TestURLPreviewCache(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	if _, _, err := db.URLPreview(ctx, "https://x/"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing preview err = %v", err)
	}
	mustWrite(t, db, func(tx *Tx) error { return tx.PutURLPreview(ctx, "https://x/", 5, []byte(`{"a":1}`)) })
	mustWrite(t, db, func(tx *Tx) error { return tx.PutURLPreview(ctx, "https://x/", 7, []byte(`{"a":2}`)) })
	og, ts, err := db.URLPreview(ctx, "https://x/")
	if err != nil || ts != 7 || string(og) != `{"a":2}` {
		t.Fatalf("preview = %s, %d, %v", og, ts, err)
	}
	mustWrite(t, db, func(tx *Tx) error {
		n, err := tx.DeleteURLPreviews(ctx, 8)
		if n != 1 {
			t.Errorf("deleted %d previews, want 1", n)
		}
		return err
	})
	if _, _, err := db.URLPreview(ctx, "https://x/"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("preview survived deletion: %v", err)
	}
}

// A user's uploads: listed newest first, summed for the quota, and their
// thumbnail state updated.
func TestUserMediaAndUsage(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	mustWrite(t, db, func(tx *Tx) error {
		for _, m := range []Media{
			{Origin: "hs", MediaID: "old", UserID: "@u:hs", CreatedTS: 1, UploadedTS: 1, Size: 10},
			{Origin: "hs", MediaID: "new", UserID: "@u:hs", CreatedTS: 5, UploadedTS: 5, Size: 32},
			{Origin: "hs", MediaID: "theirs", UserID: "@v:hs", CreatedTS: 3, UploadedTS: 3, Size: 1000},
		} {
			if err := tx.InsertMedia(ctx, m); err != nil {
				return err
			}
		}
		if n, err := tx.MediaUsage(ctx, "@u:hs"); err != nil || n != 42 {
			t.Errorf("usage in the write = %d, %v", n, err)
		}
		return tx.SetMediaThumbState(ctx, "hs", "new", ThumbTooLarge)
	})
	if n, err := db.MediaUsage(ctx, "@u:hs"); err != nil || n != 42 {
		t.Fatalf("MediaUsage = %d, %v; want 42", n, err)
	}
	if n, _ := db.MediaUsage(ctx, "@nobody:hs"); n != 0 {
		t.Fatalf("usage of nobody = %d", n)
	}
	list, err := db.UserMedia(ctx, "@u:hs")
	if err != nil || len(list) != 2 || list[0].MediaID != "new" || list[1].MediaID != "old" || list[0].ThumbState != ThumbTooLarge {
		t.Fatalf("UserMedia = %+v, %v", list, err)
	}
}
