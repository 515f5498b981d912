package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"

	"maunium.net/go/mautrix/id"

	"matrixhs/config"
	"matrixhs/internal/dbcopy"
	"matrixhs/internal/pgtest"
	"matrixhs/tests/testserver"
)

// migratedMessages is how many messages the migrated server holds.
const migratedMessages = 10000

// TestMigrateSQLiteToPostgres: a SQLite server with users, devices, E2EE
// keys, rooms, media and 10,000 messages is copied into PostgreSQL by
// dbcopy.Migrate (homeserver migrate-db); a server on the copy answers the
// same /sync, /messages, /keys/query, /search and media requests with the
// same answers, and goes on working (new events and accounts get fresh
// numbers: the sequences moved past the copied rows).
func TestMigrateSQLiteToPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 messages")
	}
	target := pgtest.URL(t)
	src := testserver.StartSQLite(t, nil)
	alice := e2eeUser(t, src, "alice", "ALICEDEV")
	bob := e2eeUser(t, src, "bob", "BOBDEV")
	for _, d := range []*e2eeDevice{alice, bob} {
		d.upload(t, map[string]any{"device_keys": d.deviceKeys(t), "one_time_keys": d.otks(t, 0, 5)}).want(t, 200, "")
	}
	roomID := mkRoomRaw(t, src, alice.token, map[string]any{"name": "Migrated room", "topic": "moving house", "preset": "public_chat"})
	do(t, "POST", v3(src, "join", string(roomID)), bob.token, map[string]any{}).want(t, 200, "")
	r := upload(t, src, alice.token, "?filename=pic.webp", "image/webp", bytes.NewReader(mediaWebP), int64(len(mediaWebP))).want(t, 200, "")
	mxc := contentURI(t, r)
	sendMany(t, src, roomID, []string{alice.token, bob.token}, migratedMessages)

	before := migrationSnapshot(t, src, alice, bob, roomID, mxc)
	src.Stop()

	var progress bytes.Buffer
	reports, err := dbcopy.Migrate(context.Background(), src.Config.Database.Path, target, dbcopy.Options{BatchSize: 1000, Progress: &progress})
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, progress.String())
	}
	if !strings.Contains(progress.String(), "copying events: 1000/") {
		t.Errorf("no batch progress for events in:\n%s", progress.String())
	}
	copied := map[string]int64{}
	for _, rep := range reports {
		copied[rep.Name] = rep.Rows
	}
	if copied["events"] < migratedMessages || copied["accounts"] < 2 || copied["devices"] < 2 {
		t.Errorf("copied rows %v, want >= %d events and both users' accounts and devices", copied, migratedMessages)
	}

	dst := testserver.StartIn(t, src.DataDir, map[string]string{config.EnvDatabaseURL: target})
	if !dst.Config.Database.Postgres() {
		t.Fatal("the server on the copy does not run on PostgreSQL")
	}
	for _, d := range []*e2eeDevice{alice, bob} {
		d.s = dst
	}
	after := migrationSnapshot(t, dst, alice, bob, roomID, mxc)
	for what, want := range before {
		if got := after[what]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s differs after the migration:\nSQLite:     %.2000s\nPostgreSQL: %.2000s", what, jsonText(want), jsonText(got))
		}
	}

	// Still a working server: a new message and a new account.
	do(t, "PUT", v3(dst, "rooms", string(roomID), "send", "m.room.message", "after-migration"), alice.token,
		map[string]any{"msgtype": "m.text", "body": "written on PostgreSQL"}).want(t, 200, "")
	carol := newUser(t, dst, "carol")
	join(t, carol, roomID)
	page := messages(t, dst, bob.token, roomID, url.Values{"dir": {"b"}, "limit": {"3"}})
	if bodies := messageBodies(page.Chunk); len(bodies) == 0 || bodies[0] != "written on PostgreSQL" {
		t.Errorf("latest messages after the migration: %v", bodies)
	}

	// The source stays as it was, and a second migration into the now
	// filled database is refused.
	if _, err := dbcopy.Migrate(context.Background(), src.Config.Database.Path, target, dbcopy.Options{}); err == nil ||
		!strings.Contains(err.Error(), "not empty") {
		t.Errorf("migrating into a filled database: err = %v, want a refusal", err)
	}
}

// sendMany sends n messages into a room from several senders at once; the
// bodies carry words to search for.
func sendMany(t *testing.T, s *testserver.Server, roomID id.RoomID, tokens []string, n int) {
	t.Helper()
	const workers = 6
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			token := tokens[w%len(tokens)]
			for i := w; i < n; i += workers {
				body, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d about fruit%d", i, i%100)})
				u := v3(s, "rooms", string(roomID), "send", "m.room.message", fmt.Sprintf("bulk-%d", i))
				req, _ := http.NewRequest("PUT", u, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				raw, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					errs <- fmt.Errorf("send %d: %d %s", i, res.StatusCode, raw)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// migrationSnapshot is what clients see of the server, by request.
func migrationSnapshot(t *testing.T, s *testserver.Server, alice, bob *e2eeDevice, roomID id.RoomID, mxc id.ContentURI) map[string]any {
	t.Helper()
	out := map[string]any{}
	filter := url.QueryEscape(`{"room":{"timeline":{"limit":50}},"presence":{"not_types":["*"]}}`)
	for _, d := range []*e2eeDevice{alice, bob} {
		out["sync "+d.userID] = do(t, "GET", v3(s, "sync")+"?filter="+filter, d.token, nil).want(t, 200, "").Body
	}
	from := ""
	for page := range 3 {
		u := roomURL(s, roomID, "messages") + "?dir=b&limit=100"
		if from != "" {
			u += "&from=" + url.QueryEscape(from)
		}
		body := do(t, "GET", u, bob.token, nil).want(t, 200, "").Body
		out[fmt.Sprintf("messages page %d", page)] = body
		from, _ = body["end"].(string)
	}
	out["keys/query"] = bob.query(t, alice.userID, bob.userID).Body
	search := searchRaw(t, s, bob.token, map[string]any{"search_term": "fruit42", "order_by": "recent"}, "").want(t, 200, "").Body
	dropRanks(search)
	out["search"] = search
	dl := get(t, s, "GET", mediaPath(authedMedia, "download", mxc), alice.token).want(t, 200, "")
	out["media download"] = []any{dl.Header.Get("Content-Type"), dl.Raw}
	th := get(t, s, "GET", mediaPath(authedMedia, "thumbnail", mxc)+"?width=32&height=32&method=scale", alice.token).want(t, 200, "")
	out["media thumbnail"] = []any{th.Header.Get("Content-Type"), th.Raw}
	for _, v := range out {
		dropAges(v)
	}
	return out
}

// dropAges removes unsigned.age from every event: it is the time since the
// event was sent, which passes between the two snapshots.
func dropAges(v any) {
	switch x := v.(type) {
	case map[string]any:
		if u, ok := x["unsigned"].(map[string]any); ok {
			delete(u, "age")
		}
		for _, e := range x {
			dropAges(e)
		}
	case []any:
		for _, e := range x {
			dropAges(e)
		}
	}
}

// dropRanks removes the ranks of search results: bm25 (SQLite) and
// ts_rank (PostgreSQL) score differently; the results and their order
// (by recency) must not differ.
func dropRanks(search map[string]any) {
	results, _ := jget(search, "search_categories", "room_events", "results").([]any)
	for _, r := range results {
		if m, ok := r.(map[string]any); ok {
			delete(m, "rank")
		}
	}
}

func jsonText(v any) string {
	raw, _ := json.Marshal(v)
	return string(raw)
}
