package dbcopy

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/jackc/pgx/v5"

	"matrixhs/storage"
)

// Migrate copies the SQLite database at srcPath into the empty PostgreSQL
// database at url: it refuses a target holding data, creates the tables
// (the migrations of this binary), refuses when the two schemas' versions
// differ, copies (see Copy) and rebuilds the search index.
func Migrate(ctx context.Context, srcPath, dbURL string, opts Options) ([]TableReport, error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if _, err := os.Stat(srcPath); err != nil {
		return nil, fmt.Errorf("the SQLite database: %w", err)
	}
	// mode=ro: SQLite itself refuses every write on this connection.
	src, err := sql.Open("sqlite", "file:"+srcPath+"?mode=ro&_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", srcPath, err)
	}
	defer src.Close()
	srcVersion, err := schemaVersion(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("reading the schema version of %s: %w", srcPath, err)
	}

	redacted := redact(dbURL)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", redacted, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Refused before the migrations touch it.
	if err := CheckEmpty(ctx, conn); err != nil {
		return nil, fmt.Errorf("%s: %w", redacted, err)
	}
	fmt.Fprintf(opts.Progress, "creating the tables in %s\n", redacted)
	dstVersion, err := migrateTarget(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", redacted, err)
	}
	if srcVersion != dstVersion {
		return nil, fmt.Errorf("the SQLite database is at schema version %d and this binary's PostgreSQL schema at %d: "+
			"run this version of the server once on the SQLite database (it upgrades it), stop it, and migrate again", srcVersion, dstVersion)
	}
	opts.Finish = rebuildSearch
	return Copy(ctx, src, conn, opts)
}

// migrateTarget brings the target's schema up to date, returning its
// version.
func migrateTarget(ctx context.Context, dbURL string) (int, error) {
	db, err := storage.OpenPostgres(ctx, dbURL, 2)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	return db.SchemaVersion(ctx)
}

func schemaVersion(ctx context.Context, db *sql.DB) (int, error) {
	var v int
	err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

// rebuildSearch fills PostgreSQL's search index (SQLite's FTS5 index is not
// copied: its text is not stored) for the events the copied
// event_search_docs lists, which are exactly the indexed ones.
func rebuildSearch(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT e.event_nid, e.type, e.json FROM event_search_docs d JOIN events e ON e.event_nid = d.event_nid`)
	if err != nil {
		return fmt.Errorf("reading the indexed events: %w", err)
	}
	var nids []int64
	var words, weights []string
	for rows.Next() {
		var nid int64
		var typ, raw string
		if err := rows.Scan(&nid, &typ, &raw); err != nil {
			rows.Close()
			return err
		}
		var ev struct {
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal([]byte(raw), &ev) != nil {
			continue
		}
		if w, weight, ok := storage.SearchDocument(typ, ev.Content); ok {
			nids, words, weights = append(nids, nid), append(words, w), append(weights, weight)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading the indexed events: %w", err)
	}
	const batch = 5000
	for i := 0; i < len(nids); i += batch {
		j := min(i+batch, len(nids))
		if _, err := tx.Exec(ctx, `INSERT INTO event_search (event_nid, doc)
			SELECT n, setweight(to_tsvector('simple', w), wt::"char") FROM unnest($1::bigint[], $2::text[], $3::text[]) AS x(n, w, wt)`,
			nids[i:j], words[i:j], weights[i:j]); err != nil {
			return fmt.Errorf("rebuilding the search index: %w", err)
		}
	}
	return nil
}

// redact hides the password of a connection URL.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
