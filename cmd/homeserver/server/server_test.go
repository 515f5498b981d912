package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"matrixhs/config"
	"matrixhs/internal/accounts"
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

// TestShutdownEndsLongPolls: a graceful stop answers waiting /sync
// long-polls at once instead of waiting out their timeouts.
func TestShutdownEndsLongPolls(t *testing.T) {
	ctx := context.Background()
	cfg := loadTestConfig(t, t.TempDir())
	cfg.Registration.BcryptCost = 4
	s, err := New(ctx, cfg, Options{LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(""); err != nil {
		t.Fatal(err)
	}
	login, err := s.Accounts.Register(ctx, accounts.Registration{Localpart: "poller", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := http.NewRequest("GET", s.URL()+"/_matrix/client/v3/sync", nil)
	first.Header.Set("Authorization", "Bearer "+login.AccessToken)
	resp, err := http.DefaultClient.Do(first)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		NextBatch string `json:"next_batch"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	status := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", s.URL()+"/_matrix/client/v3/sync?timeout=60000&since="+body.NextBatch, nil)
		req.Header.Set("Authorization", "Bearer "+login.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	// Wait until the long-poll is in flight: the server then has an active connection.
	deadline := time.Now().Add(10 * time.Second)
	for s.activeRequests() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("long-poll never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t0 := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Fatalf("shutdown took %s with a long-poll open", took)
	}
	if code := <-status; code != http.StatusOK {
		t.Fatalf("long-poll answered %d during shutdown, want 200", code)
	}
}

// TestOldConfigKeysAreLoggedAtStartup: a file with old flat keys starts the
// server with their values, and each is logged once, as a warning naming
// its new key.
func TestOldConfigKeysAreLoggedAtStartup(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte("max_upload_bytes: 1048576\nlog_level: debug\n"), 0o600)
	cfg := loadTestConfig(t, dir)
	if cfg.Media.MaxUploadBytes != 1<<20 || cfg.Logging.Level != "debug" {
		t.Fatalf("old keys not applied: %+v %+v", cfg.Media, cfg.Logging)
	}
	var out bytes.Buffer
	s, err := New(context.Background(), cfg, Options{LogOutput: &out})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var entry struct {
			Level, Msg, Key string
			NewKey          string `json:"new_key"`
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if entry.Key != "" {
			if entry.Level != "warning" || !strings.Contains(entry.Msg, entry.NewKey) {
				t.Errorf("notice logged as %+v", entry)
			}
			got[entry.Key] = entry.NewKey
		}
	}
	if len(got) != 2 || got["max_upload_bytes"] != "media.max_upload_bytes" || got["log_level"] != "logging.level" {
		t.Fatalf("logged notices %v", got)
	}
}
