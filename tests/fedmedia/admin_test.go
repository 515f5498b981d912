package fedmedia

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"matrixhs/storage"
	"matrixhs/tests/fedtest"
)

// contentFiles counts the files of a server's media store.
func contentFiles(t *testing.T, root string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return n
}

// TestAdminPurgeMediaCache: Synapse's purge_media_cache deletes hs2's
// copies of hs1's media (and their thumbnails and files), not hs2's own
// uploads; the media is fetched again when asked for.
func TestAdminPurgeMediaCache(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice, bob := newUser(t, hs1, "alice"), newUser(t, hs2, "bob")
	if err := hs2.Accounts.SetAdmin(context.Background(), "@bob:hs2", true); err != nil {
		t.Fatal(err)
	}
	img := pngImage(t, 300, 200)
	id := alice.upload(t, img, "image/png", "a.png")
	own := bob.upload(t, []byte("bob's own"), "text/plain", "b.txt")
	if resp, _ := bob.do(t, "GET", "/_matrix/client/v1/media/thumbnail/hs1/"+id+"?width=32&height=32&method=scale", "", nil); resp.StatusCode != 200 {
		t.Fatalf("remote thumbnail: %d", resp.StatusCode)
	}
	root := hs2.Config.Media.Path
	before := contentFiles(t, root)

	purge := func(ts int64) map[string]any {
		t.Helper()
		resp, raw := bob.do(t, "POST", "/_synapse/admin/v1/purge_media_cache?before_ts="+strconv.FormatInt(ts, 10), "application/json", []byte(`{}`))
		var out map[string]any
		if resp.StatusCode != 200 || json.Unmarshal(raw, &out) != nil {
			t.Fatalf("purge_media_cache: %d %s", resp.StatusCode, raw)
		}
		return out
	}
	if out := purge(time.Now().Add(-time.Hour).UnixMilli()); out["deleted"] != float64(0) {
		t.Fatalf("purging older copies = %v", out)
	}
	if out := purge(time.Now().Add(time.Minute).UnixMilli()); out["deleted"] != float64(1) {
		t.Fatalf("purge = %v", out)
	}
	if _, err := hs2.DB.Media(context.Background(), "hs1", id); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the cached copy is still there: %v", err)
	}
	if after := contentFiles(t, root); after != before-2 {
		t.Fatalf("media files: %d before, %d after; want the copy and its thumbnail gone", before, after)
	}
	if _, err := hs2.DB.Media(context.Background(), "hs2", own); err != nil {
		t.Fatalf("hs2's own upload went too: %v", err)
	}
	resp, body := bob.do(t, "GET", "/_matrix/client/v1/media/download/hs1/"+id, "", nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, img) {
		t.Fatalf("fetching again: %d", resp.StatusCode)
	}
	if resp, raw := bob.do(t, "POST", "/_synapse/admin/v1/purge_media_cache", "application/json", []byte(`{}`)); resp.StatusCode != 400 || errcode(raw) != "M_MISSING_PARAM" {
		t.Fatalf("without before_ts: %d %s", resp.StatusCode, raw)
	}
	if resp, raw := alice.do(t, "POST", "/_synapse/admin/v1/purge_media_cache?before_ts=1", "application/json", []byte(`{}`)); resp.StatusCode != 403 || errcode(raw) != "M_FORBIDDEN" {
		t.Fatalf("non-admin: %d %s", resp.StatusCode, raw)
	}
}
