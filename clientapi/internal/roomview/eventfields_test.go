package roomview

import (
	"encoding/json"
	"testing"
)

func TestKeepFields(t *testing.T) {
	ev := json.RawMessage(`{"type":"m.room.message","sender":"@a:x","content":{"body":"hi","msgtype":"m.text","m.relates_to":{"rel_type":"m.thread"}},"unsigned":{"age":1}}`)
	got := keepFields(ev, []string{"type", "content.body", `content.m\.relates_to`, "content.missing", "nope.deeper"})
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	content, _ := m["content"].(map[string]any)
	if m["type"] != "m.room.message" || content["body"] != "hi" || content["m.relates_to"] == nil || len(content) != 2 || len(m) != 2 {
		t.Fatalf("keepFields = %s", got)
	}
	if parts := splitFieldPath(`a\.b.c\\d`); len(parts) != 2 || parts[0] != "a.b" || parts[1] != `c\d` {
		t.Fatalf("splitFieldPath = %q", parts)
	}
}
