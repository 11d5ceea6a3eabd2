package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jetonhq/jeton/internal/tokens"
)

// Metrics holds Jeton's Prometheus metrics in a private registry.
type Metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	verifyCodes [16]prometheus.Counter
	verifyTime  prometheus.Histogram
	storeErrors *prometheus.CounterVec
	leaks       *prometheus.CounterVec
}

// NewMetrics returns metrics registered in a fresh registry.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jeton_http_requests_total",
		Help: "HTTP requests by route and status code."}, []string{"route", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jeton_http_request_duration_seconds",
		Help: "HTTP request latency by route.", Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}},
		[]string{"route"})
	verify := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jeton_verify_results_total",
		Help: "Token verifications by result code."}, []string{"code"})
	for _, c := range tokens.Codes() {
		m.verifyCodes[c] = verify.WithLabelValues(c.String())
	}
	m.verifyTime = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "jeton_verify_duration_seconds",
		Help: "Time to verify one token, in process.", Buckets: []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 1e-4, 1e-3, 1e-2, .1}})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jeton_store_errors_total",
		Help: "Failed store operations."}, []string{"op"})
	m.leaks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jeton_leaked_tokens_total",
		Help: "Tokens reported leaked (POST /v1/leaks), by what they turned out to be: revoked, grace_ended, inactive, unknown or malformed."}, []string{"outcome"})
	m.reg.MustRegister(m.requests, m.latency, verify, m.verifyTime, m.storeErrors, m.leaks,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// WALStats is what an SQLite store reports about its write-ahead log.
type WALStats interface {
	WALSize() int64     // the WAL file's size in bytes
	WALRestarts() int64 // times the writer checkpointed an oversized WAL
}

// WatchWAL adds gauges of st's write-ahead log to the registry. Call it
// once, for an SQLite store only.
func (m *Metrics) WatchWAL(st WALStats) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jeton_store_wal_bytes",
			Help: "Size of SQLite's write-ahead log file."}, func() float64 { return float64(st.WALSize()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jeton_store_wal_restarts_total",
			Help: "Checkpoints the SQLite writer ran because the write-ahead log outgrew its limit."},
			func() float64 { return float64(st.WALRestarts()) }))
}

// AuditStats is what a PostgreSQL store reports about chaining its audit
// events after commit.
type AuditStats interface {
	AuditChainErrors() int64 // background rounds of chaining that failed
}

// WatchAudit adds a counter of st's failed audit chaining to the registry.
// Call it once, for a PostgreSQL store only.
func (m *Metrics) WatchAudit(st AuditStats) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "jeton_audit_chain_errors_total",
		Help: "Background rounds of chaining committed audit events that failed (the events stay pending and are chained later)."},
		func() float64 { return float64(st.AuditChainErrors()) }))
}

// onLeak counts one reported token by its outcome.
func (m *Metrics) onLeak(outcome string) { m.leaks.WithLabelValues(outcome).Inc() }

// OnVerify records one verification; it is tokens.Config.OnVerify.
func (m *Metrics) OnVerify(c tokens.Code, d time.Duration) {
	if int(c) < len(m.verifyCodes) && m.verifyCodes[c] != nil {
		m.verifyCodes[c].Inc()
	}
	m.verifyTime.Observe(d.Seconds())
}

// OnStoreError counts a failed background store operation.
func (m *Metrics) OnStoreError(op string) { m.storeErrors.WithLabelValues(op).Inc() }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument counts and times the requests of one route. Series are
// resolved once per route so that the hot path does no label lookups
// beyond the status code.
func (m *Metrics) instrument(route string, next http.Handler) http.Handler {
	obs := m.latency.WithLabelValues(route)
	byCode := map[int]prometheus.Counter{}
	for _, c := range []int{200, 201, 204, 400, 401, 403, 404, 409, 413, 429, 500} {
		byCode[c] = m.requests.WithLabelValues(route, strconv.Itoa(c))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		obs.Observe(time.Since(start).Seconds())
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		if c, ok := byCode[sw.status]; ok {
			c.Inc()
		} else {
			m.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		}
	})
}
