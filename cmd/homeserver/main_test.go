package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"matrixhs/config"
	"matrixhs/storage"
)

// cli runs the command line with the given stdin and returns exit code and output.
func cli(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func setupEnv(t *testing.T) string {
	dir := t.TempDir()
	t.Setenv(config.EnvDataDir, dir)
	t.Setenv(config.EnvConfig, "")
	t.Setenv(config.EnvServerName, "cli.test")
	return dir
}

func TestUserCommands(t *testing.T) {
	dir := setupEnv(t)
	if code, out, errOut := cli(t, "s3cret\n", "user", "add", "-admin", "-displayname", "Alice", "alice"); code != 0 || !strings.Contains(out, "@alice:cli.test (admin)") {
		t.Fatalf("user add: %d %q %q", code, out, errOut)
	}
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("bobpw\n"), 0o600)
	if code, _, errOut := cli(t, "", "user", "add", "-password-file", pwFile, "@bob:cli.test"); code != 0 {
		t.Fatalf("user add bob: %s", errOut)
	}
	if code, _, errOut := cli(t, "x\n", "user", "add", "alice"); code != 1 || !strings.Contains(errOut, "already taken") {
		t.Fatalf("duplicate add: %d %q", code, errOut)
	}
	if code, _, errOut := cli(t, "x\n", "user", "add", "Bad Name"); code != 1 || !strings.Contains(errOut, "may contain only") {
		t.Fatalf("invalid name: %d %q", code, errOut)
	}
	if code, _, errOut := cli(t, "x\n", "user", "add", "@carol:elsewhere"); code != 1 || !strings.Contains(errOut, "not a user of this server") {
		t.Fatalf("remote name: %d %q", code, errOut)
	}
	if code, _, _ := cli(t, "\n", "user", "add", "dave"); code != 1 {
		t.Fatal("empty password accepted")
	}
	code, out, _ := cli(t, "", "user", "list")
	if code != 0 || !strings.Contains(out, "@alice:cli.test  true") || !strings.Contains(out, "@bob:cli.test") {
		t.Fatalf("user list: %q", out)
	}
	if code, _, errOut := cli(t, "newpw\n", "user", "passwd", "alice"); code != 0 {
		t.Fatalf("passwd: %s", errOut)
	}
	if code, _, errOut := cli(t, "x\n", "user", "passwd", "nobody"); code != 1 || !strings.Contains(errOut, "no such user") {
		t.Fatalf("passwd unknown: %d %q", code, errOut)
	}
	if code, _, errOut := cli(t, "", "user", "deactivate", "bob"); code != 0 {
		t.Fatalf("deactivate: %s", errOut)
	}

	db, err := storage.Open(context.Background(), filepath.Join(dir, "homeserver.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	alice, err := db.Account(context.Background(), "@alice:cli.test")
	if err != nil || !alice.IsAdmin || alice.DisplayName != "Alice" || !strings.HasPrefix(alice.PasswordHash, "$2") {
		t.Fatalf("alice = %+v, %v", alice, err)
	}
	bob, err := db.Account(context.Background(), "@bob:cli.test")
	if err != nil || !bob.Deactivated || bob.PasswordHash != "" {
		t.Fatalf("bob = %+v, %v", bob, err)
	}
}

func TestRegistrationTokenCommands(t *testing.T) {
	setupEnv(t)
	code, out, errOut := cli(t, "", "registration-token", "create", "-uses", "2", "-expires", "48h")
	token := strings.TrimSpace(out)
	if code != 0 || len(token) < 12 {
		t.Fatalf("create: %d %q %q", code, out, errOut)
	}
	if code, _, _ := cli(t, "", "registration-token", "create", "-token", "fixed"); code != 0 {
		t.Fatal("create fixed failed")
	}
	if code, _, errOut := cli(t, "", "registration-token", "create", "-token", "fixed"); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("duplicate: %d %q", code, errOut)
	}
	code, out, _ = cli(t, "", "registration-token", "list")
	if code != 0 || !strings.Contains(out, token) || !strings.Contains(out, "fixed") || !strings.Contains(out, "unlimited") {
		t.Fatalf("list: %q", out)
	}
	if code, _, _ := cli(t, "", "registration-token", "delete", "fixed"); code != 0 {
		t.Fatal("delete failed")
	}
	if code, _, _ := cli(t, "", "registration-token", "delete", "fixed"); code != 1 {
		t.Fatal("deleting a missing token succeeded")
	}
}

func TestMiscCommands(t *testing.T) {
	setupEnv(t)
	if code, out, _ := cli(t, "", "version"); code != 0 || !strings.HasPrefix(out, "homeserver ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, errOut := cli(t, "", "frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
	code, out, _ := cli(t, "", "generate-config", "-server-name", "example.org")
	if code != 0 || !strings.Contains(out, "server_name: example.org") || !strings.Contains(out, "shared_secret: ") {
		t.Fatalf("generate-config: %q", out)
	}
	dst := filepath.Join(t.TempDir(), "hs.yaml")
	if code, _, _ := cli(t, "", "generate-config", "-output", dst); code != 0 {
		t.Fatal("generate-config -output failed")
	}
	if code, _, _ := cli(t, "", "generate-config", "-output", dst); code != 1 {
		t.Fatal("generate-config overwrote an existing file")
	}
}

// TestServeStartsAndStopsOnSIGTERM runs the real serve command with only
// MATRIX_* variables and an empty data dir, then stops it with SIGTERM.
func TestServeStartsAndStopsOnSIGTERM(t *testing.T) {
	dir := setupEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv(config.EnvListen, addr)
	done := make(chan int, 1)
	go func() { code, _, _ := cli(t, "", "serve"); done <- code }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/_matrix/client/versions")
		if err == nil {
			var body struct{ Versions []string }
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != 200 || len(body.Versions) == 0 {
				t.Fatalf("versions: %d %v", resp.StatusCode, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, f := range []string{"homeserver.yaml", "homeserver.db", "signing.key", "logs/homeserver.log"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("first start did not create %s: %v", f, err)
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if _, err := http.Get("http://" + addr + "/_matrix/client/versions"); err == nil {
		t.Fatal("server still answers after shutdown")
	}
}
