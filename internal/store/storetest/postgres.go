package storetest

import (
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

var schemaSeq atomic.Int64

// PostgresDSN returns a DSN for a fresh, empty schema in the test database
// named by JETON_TEST_POSTGRES_DSN, dropping it when t ends. It skips t when
// the variable is unset.
func PostgresDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("JETON_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("JETON_TEST_POSTGRES_DSN is not set")
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	schema := fmt.Sprintf("jeton_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6, schemaSeq.Add(1))
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema (is PostgreSQL running at JETON_TEST_POSTGRES_DSN?): %v", err)
	}
	t.Cleanup(func() { admin.Exec("DROP SCHEMA " + schema + " CASCADE") })
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
