package throttle

import (
	"net/netip"
	"sync"
	"time"
)

// AuditBudget decides which of many refused or failed attempts are written
// to the audit log: at most perAddress per client address (IPv6: per /64)
// and total in all, per period. A flood of bad requests must not become a
// flood of durable writes, each of which takes its turn with every other
// write of the store; nor, from a spray of addresses, one audit entry per
// address.
//
// It is safe for concurrent use.
type AuditBudget struct {
	perAddress, total int
	period            int64 // nanoseconds

	mu         sync.Mutex
	addrs      map[netip.Prefix]*budget // the invalid prefix: unknown addresses
	all        budget
	suppressed int // attempts not audited since the last audited one
}

type budget struct {
	start int64 // start of the current period, Unix nanoseconds
	n     int
}

// NewAuditBudget returns an AuditBudget of perAddress entries per address
// and total entries in all per period.
func NewAuditBudget(perAddress, total int, period time.Duration) *AuditBudget {
	return &AuditBudget{perAddress: perAddress, total: total, period: int64(period), addrs: make(map[netip.Prefix]*budget)}
}

// Take reports whether an attempt from ip (the zero Addr if unknown) is
// audited and, if so, how many attempts were not audited since the last
// one that was: the entry should say so.
func (a *AuditBudget) Take(ip netip.Addr, now time.Time) (suppressed int, ok bool) {
	addr := AddrKey(ip)
	ns := now.UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.addrs[addr]
	if b == nil {
		if len(a.addrs) >= MaxTracked {
			a.sweep(ns)
		}
		b = &budget{start: ns}
		a.addrs[addr] = b
	}
	for _, x := range []*budget{b, &a.all} {
		if ns-x.start >= a.period {
			x.start, x.n = ns, 0
		}
	}
	if b.n >= a.perAddress || a.all.n >= a.total {
		a.suppressed++
		return 0, false
	}
	b.n++
	a.all.n++
	suppressed, a.suppressed = a.suppressed, 0
	return suppressed, true
}

// sweep drops the addresses whose period is over and, if that is not
// enough, arbitrary ones, down to 90% of MaxTracked.
func (a *AuditBudget) sweep(now int64) {
	for k, v := range a.addrs {
		if now-v.start >= a.period {
			delete(a.addrs, k)
		}
	}
	for k := range a.addrs {
		if len(a.addrs) < MaxTracked*9/10 {
			return
		}
		delete(a.addrs, k)
	}
}
