package appservice

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodReg = `id: telegram
url: http://127.0.0.1:29317
as_token: as-secret
hs_token: hs-secret
sender_localpart: telegrambot
rate_limited: false
namespaces:
  users:
    - regex: '@telegram_.*:hs\.test'
      exclusive: true
  aliases:
    - regex: '#telegram_.*:hs\.test'
      exclusive: true
  rooms: []
protocols: [telegram]
receive_ephemeral: true
de.sorunome.msc2409.push_ephemeral: true
io.element.msc4190: true
org.matrix.msc3202: true
`

func TestParseRegistration(t *testing.T) {
	r, err := Parse([]byte(goodReg), "hs.test")
	if err != nil {
		t.Fatal(err)
	}
	if r.SenderID != "@telegrambot:hs.test" || r.IsRateLimited() || !r.Ephemeral() || !r.MSC4190 || !r.MSC3202 || r.PushURL() != "http://127.0.0.1:29317" {
		t.Fatalf("parsed %+v", r)
	}
	for user, want := range map[string]bool{
		"@telegram_1:hs.test": true, "@telegrambot:hs.test": true, "@alice:hs.test": false, "@xtelegram_1:hs.test": false,
	} {
		if got := r.IsExclusiveUser(user); got != want {
			t.Errorf("IsExclusiveUser(%s) = %v", user, got)
		}
	}
	if !r.IsExclusiveAlias("#telegram_chat:hs.test") || r.IsRoomInNamespace("!x:hs.test") {
		t.Fatal("alias or room namespace wrong")
	}
}

func TestParseRegistrationRefusesBadFiles(t *testing.T) {
	for name, tc := range map[string]struct{ from, to, want string }{
		"bad regex":        {`'@telegram_.*:hs\.test'`, `'@telegram_(.*:hs\.test'`, "regex"},
		"missing as_token": {"as_token: as-secret\n", "", "as_token is missing"},
		"missing id":       {"id: telegram\n", "", "id is missing"},
		"same tokens":      {"hs_token: hs-secret", "hs_token: as-secret", "must differ"},
		"bad sender":       {"sender_localpart: telegrambot", "sender_localpart: Telegram Bot", "sender_localpart"},
		"bad url":          {"url: http://127.0.0.1:29317", "url: ftp://x", "url"},
		"not yaml":         {"namespaces:", "namespaces: [", "not a valid registration"},
		"regex not string": {`- regex: '@telegram_.*:hs\.test'`, `- regex: [1]`, "not a valid registration"},
		"no regex":         {"- regex: '#telegram_.*:hs\\.test'\n      exclusive: true", "- exclusive: true", "no regex"},
	} {
		t.Run(name, func(t *testing.T) {
			raw := strings.Replace(goodReg, tc.from, tc.to, 1)
			if raw == goodReg {
				t.Fatal("test case changes nothing")
			}
			_, err := Parse([]byte(raw), "hs.test")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one about %q", err, tc.want)
			}
		})
	}
}

func writeReg(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadRefusesConflictingRegistrations(t *testing.T) {
	dir := t.TempDir()
	a := writeReg(t, dir, "a.yaml", goodReg)
	other := func(repl ...string) string {
		r := strings.NewReplacer("id: telegram", "id: signal", "as-secret", "as-2", "hs-secret", "hs-2",
			"telegrambot", "signalbot", "@telegram_", "@signal_", "#telegram_", "#signal_")
		body := r.Replace(goodReg)
		for i := 0; i+1 < len(repl); i += 2 {
			body = strings.Replace(body, repl[i], repl[i+1], 1)
		}
		return body
	}
	if _, err := Load([]string{a, writeReg(t, dir, "ok.yaml", other())}, "hs.test"); err != nil {
		t.Fatalf("two distinct appservices: %v", err)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"same id":         {other("id: signal", "id: telegram"), `id "telegram" is already used`},
		"same as_token":   {other("as-2", "as-secret"), "token is already used"},
		"same hs_token":   {other("hs-2", "hs-secret"), "token is already used"},
		"overlapping":     {other(`'@signal_.*:hs\.test'`, `'@tele.*'`), "overlaps"},
		"equal regex":     {other(`'#signal_.*:hs\.test'`, `'#telegram_.*:hs\.test'`), "overlaps"},
		"sender in other": {other("sender_localpart: signalbot", "sender_localpart: telegram_bot"), "overlap"},
	} {
		t.Run(name, func(t *testing.T) {
			b := writeReg(t, dir, "b.yaml", tc.body)
			_, err := Load([]string{a, b}, "hs.test")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "b.yaml") {
				t.Fatalf("error = %v, want one naming b.yaml about %q", err, tc.want)
			}
		})
	}
	if _, err := Load([]string{filepath.Join(dir, "missing.yaml")}, "hs.test"); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestNonExclusiveNamespacesMayOverlap(t *testing.T) {
	dir := t.TempDir()
	shared := strings.ReplaceAll(goodReg, "exclusive: true", "exclusive: false")
	a := writeReg(t, dir, "a.yaml", shared)
	b := writeReg(t, dir, "b.yaml", strings.NewReplacer("id: telegram", "id: other", "as-secret", "as-2", "hs-secret", "hs-2", "telegrambot", "otherbot").Replace(shared))
	if _, err := Load([]string{a, b}, "hs.test"); err != nil {
		t.Fatal(err)
	}
}
