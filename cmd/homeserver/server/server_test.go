package server

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"matrixhs/config"
)

func TestRotatingFile(t *testing.T) {
	dir := t.TempDir()
	r, err := newRotatingFile(dir, "x.log", 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("a", 39) + "\n" // 40 bytes: two fit in 100
	for i := 0; i < 7; i++ {
		if _, err := r.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	for name, want := range map[string]int{"x.log": 40, "x.log.1": 80, "x.log.2": 80} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Size() != int64(want) {
			t.Errorf("%s: size %v, %v; want %d", name, st, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.log.3")); err == nil {
		t.Error("kept more files than asked")
	}
	if _, err := r.Write([]byte("late")); err == nil {
		t.Error("write after close succeeded")
	}
}

func loadTestConfig(b testing.TB, dir string) *config.Config {
	env := map[string]string{config.EnvDataDir: dir, config.EnvListen: "127.0.0.1:0"}
	cfg, _, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

// BenchmarkColdStart measures a first start on an empty data dir: config
// file, signing key, database and migrations, listening socket.
func BenchmarkColdStart(b *testing.B) {
	for i := 0; i < b.N; i++ {
		cfg := loadTestConfig(b, b.TempDir())
		s, err := New(context.Background(), cfg, Options{LogOutput: io.Discard})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Listen(""); err != nil {
			b.Fatal(err)
		}
		if err := s.Shutdown(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
