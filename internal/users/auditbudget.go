package users

import (
	"net/netip"
	"sync"
	"time"

	"github.com/jetonhq/jeton/internal/throttle"
)

// Throttled attempts are audited at most perAddressAudits times per address
// and globalAudits times in all per auditPeriod: a flood of throttled
// requests must not become a flood of writes.
const (
	auditPeriod       = time.Minute
	perAddressAudits  = 10
	globalAudits      = 600
	maxAuditBudgetKey = throttle.MaxTracked
)

type budget struct {
	start int64 // start of the current period, Unix nanoseconds
	n     int
}

// auditBudget decides which throttled attempts are audited.
type auditBudget struct {
	mu         sync.Mutex
	addrs      map[netip.Prefix]*budget // the invalid prefix: unknown addresses
	all        budget
	suppressed int // throttled attempts not audited since the last audited one
}

func newAuditBudget() *auditBudget { return &auditBudget{addrs: make(map[netip.Prefix]*budget)} }

// take reports whether a throttled attempt from addr is audited and, if so,
// how many were suppressed before it.
func (a *auditBudget) take(addr netip.Prefix, now time.Time) (suppressed int, ok bool) {
	ns := now.UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.addrs[addr]
	if b == nil {
		if len(a.addrs) >= maxAuditBudgetKey {
			for k, v := range a.addrs {
				if ns-v.start >= int64(auditPeriod) || len(a.addrs) >= maxAuditBudgetKey*9/10 {
					delete(a.addrs, k)
				}
			}
		}
		b = &budget{start: ns}
		a.addrs[addr] = b
	}
	for _, x := range []*budget{b, &a.all} {
		if ns-x.start >= int64(auditPeriod) {
			x.start, x.n = ns, 0
		}
	}
	if b.n >= perAddressAudits || a.all.n >= globalAudits {
		a.suppressed++
		return 0, false
	}
	b.n++
	a.all.n++
	suppressed, a.suppressed = a.suppressed, 0
	return suppressed, true
}
