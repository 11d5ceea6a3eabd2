package users

import (
	"net/netip"
	"sync"
	"time"
)

// maxTracked bounds how many usernames, and how many addresses, the
// throttle remembers, so that a spray of distinct names or addresses cannot
// exhaust memory. Past the bound, expired entries are swept first and then
// arbitrary ones: under such a flood the bound degrades to forgetting some
// counters rather than failing every login.
const maxTracked = 1 << 16

// failures counts recent failed logins per key in a sliding window. It keeps
// the times of at most limit failures per key.
type failures[K comparable] struct {
	limit  int
	window time.Duration
	m      map[K][]int64 // Unix nanoseconds, oldest first
}

func newFailures[K comparable](limit int, window time.Duration) *failures[K] {
	return &failures[K]{limit: limit, window: window, m: make(map[K][]int64)}
}

// recent drops the failures of k that left the window and returns the rest.
func (f *failures[K]) recent(k K, now int64) []int64 {
	ts, ok := f.m[k]
	if !ok {
		return nil
	}
	cut := now - int64(f.window)
	i := 0
	for i < len(ts) && ts[i] <= cut {
		i++
	}
	if i == len(ts) {
		delete(f.m, k)
		return nil
	}
	if i > 0 {
		ts = append(ts[:0], ts[i:]...)
		f.m[k] = ts
	}
	return ts
}

// full reports whether k has reached the limit within the window.
func (f *failures[K]) full(k K, now int64) bool {
	return len(f.recent(k, now)) >= f.limit
}

func (f *failures[K]) add(k K, now int64) {
	ts, ok := f.m[k]
	if !ok && len(f.m) >= maxTracked {
		f.sweep(now)
	}
	if len(ts) >= f.limit {
		ts = append(ts[:0], ts[1:]...)
	}
	f.m[k] = append(ts, now)
}

// remove forgets one failure of k recorded at t, if it is still there.
func (f *failures[K]) remove(k K, t int64) {
	ts := f.m[k]
	for i, v := range ts {
		if v == t {
			ts = append(ts[:i], ts[i+1:]...)
			if len(ts) == 0 {
				delete(f.m, k)
			} else {
				f.m[k] = ts
			}
			return
		}
	}
}

func (f *failures[K]) reset(k K) { delete(f.m, k) }

// sweep drops every key without a failure in the window and, if that is not
// enough, arbitrary keys, down to 90% of maxTracked.
func (f *failures[K]) sweep(now int64) {
	for k := range f.m {
		f.recent(k, now)
	}
	for k := range f.m {
		if len(f.m) < maxTracked*9/10 {
			break
		}
		delete(f.m, k)
	}
}

// throttle limits failed logins per username and per client address. An
// attempt counts as a failure from the moment it starts (begin) until it
// succeeds or is abandoned, so that concurrent guesses cannot all pass the
// check before the first one fails.
type throttle struct {
	mu    sync.Mutex
	users *failures[string]
	addrs *failures[netip.Prefix]
}

func newThrottle(userLimit, addrLimit int, window time.Duration) *throttle {
	return &throttle{users: newFailures[string](userLimit, window), addrs: newFailures[netip.Prefix](addrLimit, window)}
}

// begin reports whether an attempt for user from addr may proceed and, if
// so, counts it as a failure stamped with the returned time. An invalid
// addr (unknown client address) is not limited per address.
func (t *throttle) begin(user string, addr netip.Prefix, now time.Time) (int64, bool) {
	ns := now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.users.full(user, ns) || (addr.IsValid() && t.addrs.full(addr, ns)) {
		return 0, false
	}
	t.users.add(user, ns)
	if addr.IsValid() {
		t.addrs.add(addr, ns)
	}
	return ns, true
}

// succeed records that the attempt begun at stamp succeeded: the username's
// failures are forgotten, and the attempt no longer counts for addr.
func (t *throttle) succeed(user string, addr netip.Prefix, stamp int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.users.reset(user)
	t.addrs.remove(addr, stamp)
}

// undo forgets an attempt that ended without a verdict (a store error).
func (t *throttle) undo(user string, addr netip.Prefix, stamp int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.users.remove(user, stamp)
	t.addrs.remove(addr, stamp)
}

// Throttled attempts are audited at most perAddressAudits times per address
// and globalAudits times in all per auditPeriod: a flood of throttled
// requests must not become a flood of writes.
const (
	auditPeriod       = time.Minute
	perAddressAudits  = 10
	globalAudits      = 600
	maxAuditBudgetKey = maxTracked
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

// addrKey is the unit of per-address limits: the address itself for IPv4,
// its /64 for IPv6 (one host usually holds a whole /64). It is the invalid
// prefix for an invalid address.
func addrKey(ip netip.Addr) netip.Prefix {
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.WithZone("").Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}
