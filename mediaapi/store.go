package mediaapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"matrixhs/storage"
)

// Store is the content-addressed file store under the media path: every
// file is named by the SHA-256 of its bytes (content/ab/cd/abcd...), so
// identical uploads and thumbnails share one file. Uploads are streamed into
// tmp/ while hashing and renamed into place inside the database write that
// references them; deleting a file happens inside the write that removes its
// last reference. Both run under SQLite's write lock, which also serialises
// the admin CLI against a running server.
type Store struct {
	content string
	tmp     string
}

// errTooLarge is returned by Stage when the body exceeds the limit.
var errTooLarge = errors.New("content exceeds the size limit")

// OpenStore creates (if needed) the store's directories under root.
func OpenStore(root string) (*Store, error) {
	s := &Store{content: filepath.Join(root, "content"), tmp: filepath.Join(root, "tmp")}
	for _, d := range []string{s.content, s.tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating media dir: %w", err)
		}
	}
	return s, nil
}

// validHash reports whether h is a lowercase hex SHA-256, so it can never
// name anything outside the store.
func validHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Path is where the content with hash h lives.
func (s *Store) Path(h string) string {
	if !validHash(h) {
		return filepath.Join(s.content, "invalid")
	}
	return filepath.Join(s.content, h[:2], h[2:4], h)
}

// Open opens the content with hash h.
func (s *Store) Open(h string) (*os.File, error) {
	if !validHash(h) {
		return nil, fs.ErrNotExist
	}
	return os.Open(s.Path(h))
}

// Staged is content written to a temporary file and hashed, not yet in the store.
type Staged struct {
	path   string
	SHA256 string
	Size   int64
	// Head holds the first bytes, for sniffing.
	Head []byte
}

// Stage streams r into a temporary file while hashing it, never holding the
// content in memory. More than limit bytes is errTooLarge, and nothing is
// left behind on any error.
func (s *Store) Stage(r io.Reader, limit int64) (*Staged, error) {
	f, err := os.CreateTemp(s.tmp, "upload-*")
	if err != nil {
		return nil, fmt.Errorf("creating temp file: %w", err)
	}
	st := &Staged{path: f.Name()}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(st.path)
		}
	}()
	h := sha256.New()
	head := &headWriter{max: 512}
	n, err := io.Copy(io.MultiWriter(f, h, head), io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("receiving content: %w", err)
	}
	if n > limit {
		return nil, errTooLarge
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("syncing temp file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("closing temp file: %w", err)
	}
	st.SHA256 = hex.EncodeToString(h.Sum(nil))
	st.Size = n
	st.Head = head.buf
	ok = true
	return st, nil
}

type headWriter struct {
	buf []byte
	max int
}

func (w *headWriter) Write(p []byte) (int, error) {
	if room := w.max - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// Discard removes the temporary file (a no-op after Commit).
func (st *Staged) Discard() {
	if st != nil && st.path != "" {
		os.Remove(st.path)
		st.path = ""
	}
}

// Commit moves staged content into the store inside the write that
// references it. If the content is already there the temporary file is
// dropped; if this write created the file and is rolled back, the file goes.
func (s *Store) Commit(tx *storage.Tx, st *Staged) error {
	final := s.Path(st.SHA256)
	if _, err := os.Stat(final); err == nil {
		st.Discard()
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return fmt.Errorf("creating content dir: %w", err)
	}
	if err := os.Rename(st.path, final); err != nil {
		return fmt.Errorf("storing content: %w", err)
	}
	st.path = ""
	tx.OnAbort(func() { os.Remove(final) })
	return nil
}

// Release deletes, inside the write that removed their references, the
// files of hashes that nothing references any more. It returns how many
// files go. The file is moved aside first and only unlinked once the write
// is durable (or moved back if it is rolled back).
func (s *Store) Release(ctx context.Context, tx *storage.Tx, hashes []string) (int, error) {
	n := 0
	for _, h := range hashes {
		if !validHash(h) {
			continue
		}
		ref, err := tx.ContentReferenced(ctx, h)
		if err != nil {
			return n, err
		}
		if ref {
			continue
		}
		final := s.Path(h)
		trash := filepath.Join(s.tmp, "delete-"+h+"-"+randomSuffix())
		if err := os.Rename(final, trash); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return n, fmt.Errorf("removing content: %w", err)
		}
		tx.OnCommit(func() { os.Remove(trash) })
		tx.OnAbort(func() { os.Rename(trash, final) })
		n++
	}
	return n, nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// StoredFile is one file found in the store by Walk.
type StoredFile struct {
	Path    string
	SHA256  string // "" for a file that is not named like content
	Size    int64
	ModTime time.Time
}

// Walk lists the content files and, separately, the temporary files.
func (s *Store) Walk() (content, temp []StoredFile, err error) {
	err = filepath.WalkDir(s.content, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		f := StoredFile{Path: p, Size: info.Size(), ModTime: info.ModTime()}
		if name := d.Name(); validHash(name) && p == s.Path(name) {
			f.SHA256 = name
		}
		content = append(content, f)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		if e.IsDir() || !(strings.HasPrefix(e.Name(), "upload-") || strings.HasPrefix(e.Name(), "delete-")) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		temp = append(temp, StoredFile{Path: filepath.Join(s.tmp, e.Name()), Size: info.Size(), ModTime: info.ModTime()})
	}
	return content, temp, nil
}
