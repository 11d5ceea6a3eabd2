package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations(d dialect) ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		// NNNN_name.sql is for both engines; NNNN_name.sqlite.sql and
		// NNNN_name.postgres.sql for one only, the other engine having its
		// own file of that number (or none).
		if (strings.HasSuffix(base, ".sqlite.sql") && d.name != "sqlite") ||
			(strings.HasSuffix(base, ".postgres.sql") && d.name != "postgres") {
			continue
		}
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("sqlstore: migration %s: name must start with a positive number and '_'", base)
		}
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			return nil, err
		}
		text := strings.ReplaceAll(string(body), "{{BYTES}}", d.bytesType)
		ms = append(ms, migration{version: v, name: base, sql: text})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("sqlstore: two migrations numbered %d", ms[i].version)
		}
	}
	return ms, nil
}

// migrationLock is the PostgreSQL advisory lock key that serialises
// concurrent start-ups of several nodes.
const migrationLock = 0x6a65746f6e // "jeton"

// migrate applies every embedded migration not yet recorded, each in its
// own transaction together with its record.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := loadMigrations(db.d)
	if err != nil {
		return err
	}
	return db.update(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if db.d.name == "postgres" {
			// A migration waits for as long as it takes: for another node's
			// migration, and for the locks its DDL needs while older nodes
			// still serve (Options.LockTimeout bounds ordinary writes only).
			if _, err := tx.ExecContext(ctx, "SET LOCAL lock_timeout = 0"); err != nil {
				return fmt.Errorf("sqlstore: migration lock timeout: %w", err)
			}
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
				return fmt.Errorf("sqlstore: migration lock: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("sqlstore: create schema_migrations: %w", err)
		}
		applied := map[int]bool{}
		rows, err := tx.QueryContext(ctx, "SELECT version FROM schema_migrations")
		if err != nil {
			return fmt.Errorf("sqlstore: read schema_migrations: %w", err)
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return fmt.Errorf("sqlstore: read schema_migrations: %w", err)
			}
			applied[v] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("sqlstore: read schema_migrations: %w", err)
		}
		newest := ms[len(ms)-1].version
		for v := range applied {
			if v > newest {
				return fmt.Errorf("sqlstore: database is at schema version %d, newer than this binary (%d)", v, newest)
			}
		}
		for _, m := range ms {
			if applied[m.version] {
				continue
			}
			for _, stmt := range splitStatements(m.sql) {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("sqlstore: migration %s: %w", m.name, err)
				}
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
				m.version, m.name, time.Now().UnixMilli()); err != nil {
				return fmt.Errorf("sqlstore: record migration %s: %w", m.name, err)
			}
		}
		return nil
	})
}

// splitStatements splits a migration into statements at semicolons that end
// a line, dropping comment-only lines. Migrations are ours and plain DDL, so
// this needs no SQL parser.
func splitStatements(text string) []string {
	var stmts []string
	var cur strings.Builder
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			stmts = append(stmts, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		stmts = append(stmts, s)
	}
	return stmts
}
