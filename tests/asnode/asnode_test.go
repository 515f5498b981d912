// Package asnode runs a Node appservice built on matrix-appservice (the
// framework under matrix-appservice-bridge) against an in-process server:
// an echo bot. It needs node and npm; without them it is skipped.
package asnode

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/testserver"
)

func token() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// TestNodeEchoBot: the bot joins when invited and echoes a message.
func TestNodeEchoBot(t *testing.T) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := os.Stat("node_modules/matrix-appservice"); err != nil {
		install := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		if out, err := install.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	asToken, hsToken := token(), token()
	bot := "@echobot:hs.test"
	cmd := exec.CommandContext(ctx, "node", "echo.mjs")
	cmd.Env = append(os.Environ(), "HS_TOKEN="+hsToken, "AS_TOKEN="+asToken, "BOT_USER="+bot)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	var port string
	for lines.Scan() {
		if p, ok := strings.CutPrefix(lines.Text(), "LISTENING "); ok {
			port = p
			break
		}
	}
	if port == "" {
		t.Fatalf("the bot did not start: %s", stderr.String())
	}
	go io.Copy(io.Discard, stdout)

	dir := t.TempDir()
	reg := fmt.Sprintf(`id: echo
url: http://127.0.0.1:%s
as_token: %s
hs_token: %s
sender_localpart: echobot
rate_limited: false
namespaces:
  users: [{regex: '@echo_.*:hs\.test', exclusive: true}]
`, port, asToken, hsToken)
	if err := os.WriteFile(filepath.Join(dir, "echo.yaml"), []byte(reg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte("app_service_config_files: [echo.yaml]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := testserver.StartIn(t, dir, nil)
	fmt.Fprintln(stdin, s.URL())

	cli, err := mautrix.NewClient(s.URL(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	r, err := cli.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "alice", Password: "correct horse battery staple"})
	if err != nil {
		t.Fatal(err)
	}
	cli.SetCredentials(r.UserID, r.AccessToken)
	room, err := cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{id.UserID(bot)}})
	if err != nil {
		t.Fatal(err)
	}
	since := ""
	waitSync := func(what string, found func(*event.Event) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			resp, err := cli.SyncRequest(ctx, 5000, since, "", false, "")
			if err != nil {
				t.Fatal(err)
			}
			since = resp.NextBatch
			for _, ev := range resp.Rooms.Join[room.RoomID].Timeline.Events {
				if found(ev) {
					return
				}
			}
		}
		t.Fatalf("timed out waiting for %s; bot stderr: %s", what, stderr.String())
	}
	waitSync("the bot to join", func(ev *event.Event) bool {
		return ev.Type == event.StateMember && ev.GetStateKey() == bot && ev.Content.Raw["membership"] == "join"
	})
	if _, err := cli.SendText(ctx, room.RoomID, "hello bot"); err != nil {
		t.Fatal(err)
	}
	waitSync("the echo", func(ev *event.Event) bool {
		return ev.Sender == id.UserID(bot) && ev.Content.Raw["body"] == "echo: hello bot"
	})
}
