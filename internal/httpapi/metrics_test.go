package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/jetonhq/jeton/internal/tokens"
)

type fakeStoreStats struct{}

func (fakeStoreStats) WALSize() int64          { return 4096 }
func (fakeStoreStats) WALRestarts() int64      { return 1 }
func (fakeStoreStats) AuditChainErrors() int64 { return 0 }

// TestMetricsFollowPrometheusConventions lints every metric Jeton exports
// as Prometheus' own promlint does (names, base units, _total on counters,
// help text), and parses the /metrics page as a Prometheus server would.
func TestMetricsFollowPrometheusConventions(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.WatchWAL(fakeStoreStats{})
	m.WatchAudit(fakeStoreStats{})
	// A sample in every labelled family, so that each is exported.
	m.OnVerify(tokens.Valid, 3*time.Microsecond)
	m.OnStoreError("usage_flush")
	m.instrument("POST /v1/verify", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})).
		ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/v1/verify", nil))

	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("the /metrics page does not parse: %v", err)
	}
	for _, name := range []string{"jeton_http_requests_total", "jeton_http_request_duration_seconds", "jeton_verify_results_total",
		"jeton_verify_duration_seconds", "jeton_store_errors_total", "jeton_store_wal_bytes", "jeton_store_wal_restarts_total",
		"jeton_audit_chain_errors_total", "go_goroutines", "process_cpu_seconds_total"} {
		if families[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
