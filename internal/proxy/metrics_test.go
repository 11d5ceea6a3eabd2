package proxy

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsFollowPrometheusConventions lints the proxy's metrics as
// Prometheus' promlint does (names, base units, _total on counters).
func TestMetricsFollowPrometheusConventions(t *testing.T) {
	t.Parallel()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	// A sample in every family, so that each is exported.
	m.observe("repos", 200, time.Millisecond)
	m.denied.WithLabelValues("invalid_token").Inc()
	m.upstreamErrors.Inc()
	m.reloads.WithLabelValues("ok").Inc()
	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	if n, err := testutil.GatherAndCount(m.reg); err != nil || n != 5 {
		t.Errorf("%d series (%v), want one per family, 5", n, err)
	}
}
