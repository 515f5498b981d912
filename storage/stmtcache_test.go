package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Guards noReprepare (dialect.go): no query compares a bare parameter with
// a type column (only events and current_state need it, but one rule is
// simpler to keep than a list of tables), and none spells the trick out
// instead of naming it.
func TestNoBareTypeParameters(t *testing.T) {
	bare := regexp.MustCompile(`\btype\s*=\s*\$[0-9]`)
	spelled := regexp.MustCompile(`\+\$[0-9]`)
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("listing sources: %v", err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, loc := range bare.FindAllIndex(src, -1) {
			t.Errorf("%s: bare parameter compared with a type column: %q (use noReprepare)", f, src[loc[0]:loc[1]])
		}
		for _, loc := range spelled.FindAllIndex(src, -1) {
			t.Errorf("%s: %q spells out the re-prepare trick (use noReprepare)", f, src[loc[0]:loc[1]])
		}
	}
}

// A read transaction's miss prepares the statement in the background, once;
// a full cache prepares nothing more.
func TestStmtCacheBackgroundPrepare(t *testing.T) {
	sqliteOnly(t, "PostgreSQL statements are prepared by the driver, per connection")
	db, _ := openTestDB(t)
	c := db.readStmts
	q := `SELECT COUNT(*) FROM accounts WHERE user_id = $1 AND 1 = 1`
	if st := c.cached(q); st != nil {
		t.Fatal("a new query is not cached yet")
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.cached(q) == nil {
		if time.Now().After(deadline) {
			t.Fatal("never prepared in the background")
		}
		time.Sleep(time.Millisecond)
	}
	c.mu.Lock()
	for i := len(c.stmts); i < maxCachedStmts; i++ {
		c.stmts[fmt.Sprint("filler ", i)] = nil
	}
	c.mu.Unlock()
	c.cached(`SELECT 2`)
	c.mu.Lock()
	busy := len(c.preparing)
	c.mu.Unlock()
	if busy != 0 {
		t.Fatal("a full cache started a prepare")
	}
	c.mu.Lock()
	for k, st := range c.stmts {
		if st == nil {
			delete(c.stmts, k)
		}
	}
	c.mu.Unlock()
}
