package storetest

import (
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

var schemaSeq atomic.Int64

// postgresAdmin returns the URL of JETON_TEST_POSTGRES_DSN, a connection
// to it closed when t ends, and a fresh name for a schema or a database. It
// skips t when the variable is unset.
func postgresAdmin(t *testing.T) (*url.URL, *sql.DB, string) {
	t.Helper()
	dsn := os.Getenv("JETON_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("JETON_TEST_POSTGRES_DSN is not set")
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	return u, admin, fmt.Sprintf("jeton_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6, schemaSeq.Add(1))
}

// PostgresDSN returns a DSN for a fresh, empty schema in the test database
// named by JETON_TEST_POSTGRES_DSN, dropping it when t ends. It skips t when
// the variable is unset.
func PostgresDSN(t *testing.T) string {
	t.Helper()
	u, admin, schema := postgresAdmin(t)
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema (is PostgreSQL running at JETON_TEST_POSTGRES_DSN?): %v", err)
	}
	t.Cleanup(func() { admin.Exec("DROP SCHEMA " + schema + " CASCADE") })
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// PostgresDatabaseDSN returns a DSN for a fresh database on the server of
// JETON_TEST_POSTGRES_DSN, created with the given CREATE DATABASE options
// (say, a default collation) and dropped when t ends. It skips t when the
// variable is unset, or when the server refuses the test's role the right
// to create databases.
func PostgresDatabaseDSN(t *testing.T, options string) string {
	t.Helper()
	u, admin, name := postgresAdmin(t)
	if _, err := admin.Exec("CREATE DATABASE " + name + " " + options); err != nil {
		if strings.Contains(err.Error(), "SQLSTATE 42501") {
			t.Skipf("the test role may not create databases: %v", err)
		}
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
