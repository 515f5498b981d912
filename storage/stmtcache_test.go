package storage

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Guards noReprepare: no query compares a bare parameter with a type
// column (only events and current_state need it, but one rule is simpler
// to keep than a list of tables).
func TestNoBareTypeParameters(t *testing.T) {
	bare := regexp.MustCompile(`\btype\s*=\s*\$[0-9]`)
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
			t.Errorf("%s: bare parameter compared with a type column: %q (write +$n, see noReprepare)", f, src[loc[0]:loc[1]])
		}
	}
}
