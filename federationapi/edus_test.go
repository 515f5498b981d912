package federationapi

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

func TestEDUDispatch(t *testing.T) {
	f := &API{}
	var got []string
	f.HandleEDU("m.typing", func(_ context.Context, origin spec.ServerName, content json.RawMessage) error {
		got = append(got, string(origin)+" typing "+string(content))
		return nil
	})
	f.HandleEDU("m.receipt", func(context.Context, spec.ServerName, json.RawMessage) error {
		got = append(got, "receipt")
		return errors.New("refused")
	})
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	f.processEDUs(context.Background(), log, "hs2", []json.RawMessage{
		json.RawMessage(`{"edu_type":"m.typing","content":{"a":1}}`),
		json.RawMessage(`{"edu_type":"m.presence","content":{}}`), // no handler: ignored
		json.RawMessage(`{"edu_type":"m.typing","content":[1]}`),  // malformed
		json.RawMessage(`{"content":{}}`),                         // malformed
		json.RawMessage(`"x"`),                                    // malformed
		json.RawMessage(`{"edu_type":"m.receipt"}`),               // no content: {}
		json.RawMessage(`{"edu_type":"m.typing","content":{"a":2}}`),
	})
	want := []string{`hs2 typing {"a":1}`, "receipt", `hs2 typing {"a":2}`}
	if len(got) != len(want) {
		t.Fatalf("handled %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("handled %q, want %q", got, want)
		}
	}
	var logged []string
	for _, e := range hook.AllEntries() {
		logged = append(logged, e.Message)
	}
	if len(logged) != 2 || logged[0] != "3 malformed EDUs ignored" || logged[1] != "EDU dropped" {
		t.Fatalf("logged %q", logged)
	}
}
