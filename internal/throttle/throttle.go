// Package throttle limits failed attempts at guessing a secret (a password,
// a device flow's user code) per account and per client address, in a
// sliding window, in memory on one node.
//
// A guess must not be decided by a check made before the failures of
// concurrent guesses are counted, or a flood of concurrent guesses would
// all pass it. Where checking a guess is slow (a password hash), Begin
// counts it as a failure from the moment it starts until it is known not
// to be one. Where checking is cheap (a lookup), the guess is checked
// first, and then Fail counts it and decides, in one step, whether its
// outcome may be told.
//
// Addresses are limited per host: the address itself for IPv4, its /64 for
// IPv6, since one host usually holds a whole /64 and could otherwise try
// from a fresh address every time.
package throttle

import (
	"net/netip"
	"sync"
	"time"
)

// MaxTracked bounds how many accounts, and how many addresses, a Throttle
// remembers, so that a spray of distinct names or addresses cannot exhaust
// memory. Past the bound, keys without a failure in the window are dropped
// first and then arbitrary ones: under such a flood the bound degrades to
// forgetting some counters, never to refusing everyone or forgetting
// everyone at once.
const MaxTracked = 1 << 16

// Throttle counts recent failures per account and per client address.
// It is safe for concurrent use.
type Throttle struct {
	mu    sync.Mutex
	accts *failures[string]
	addrs *failures[netip.Prefix]
}

// New returns a Throttle that refuses an account after acctLimit failures
// within window, and a client address after addrLimit.
func New(acctLimit, addrLimit int, window time.Duration) *Throttle {
	return &Throttle{accts: newFailures[string](acctLimit, window), addrs: newFailures[netip.Prefix](addrLimit, window)}
}

// Attempt is an attempt that Begin let through, counted as a failure until
// Succeed or Undo says otherwise.
type Attempt struct {
	acct  string
	addr  netip.Prefix
	stamp int64
}

// Begin reports whether an attempt on acct from ip may proceed and, if so,
// counts it as a failure until Succeed or Undo. An invalid ip (the client
// address is unknown) is limited per account only.
func (t *Throttle) Begin(acct string, ip netip.Addr, now time.Time) (Attempt, bool) {
	a := Attempt{acct: acct, addr: AddrKey(ip), stamp: now.UnixNano()}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.accts.full(a.acct, a.stamp) || (a.addr.IsValid() && t.addrs.full(a.addr, a.stamp)) {
		return Attempt{}, false
	}
	t.accts.add(a.acct, a.stamp)
	if a.addr.IsValid() {
		t.addrs.add(a.addr, a.stamp)
	}
	return a, true
}

// Succeed records that a succeeded: the account's failures are forgotten
// (its owner proved who they are), and a no longer counts for its address.
func (t *Throttle) Succeed(a Attempt) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.accts.reset(a.acct)
	t.addrs.remove(a.addr, a.stamp)
}

// Undo forgets a: it ended without a failure (it was not a wrong guess, or
// it could not be decided, such as on a store error), and the account's
// other failures stand.
func (t *Throttle) Undo(a Attempt) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.accts.remove(a.acct, a.stamp)
	t.addrs.remove(a.addr, a.stamp)
}

// Allowed reports whether neither acct nor ip has reached its limit. A
// right guess is checked with it, and is not counted.
func (t *Throttle) Allowed(acct string, ip netip.Addr, now time.Time) bool {
	addr, ns := AddrKey(ip), now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.accts.full(acct, ns) && !(addr.IsValid() && t.addrs.full(addr, ns))
}

// Fail reports whether a wrong guess on acct from ip is within the limits,
// that is, whether neither limit had been reached before it, and if so
// counts it. A guess that was not must be answered as refused, not as
// wrong, like a right one past the limit: past the limit nothing is told,
// and what is not told does not count, as with Begin.
func (t *Throttle) Fail(acct string, ip netip.Addr, now time.Time) bool {
	addr, ns := AddrKey(ip), now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.accts.full(acct, ns) || (addr.IsValid() && t.addrs.full(addr, ns)) {
		return false
	}
	t.accts.add(acct, ns)
	if addr.IsValid() {
		t.addrs.add(addr, ns)
	}
	return true
}

// AddrKey is the unit of per-address limits: the address itself for IPv4
// (an IPv4-mapped IPv6 address is its IPv4 address), its /64 for IPv6. It
// is the invalid prefix for an invalid address.
func AddrKey(ip netip.Addr) netip.Prefix {
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

// failures counts recent failures per key in a sliding window. It keeps
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
	if !ok && len(f.m) >= MaxTracked {
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
// enough, arbitrary keys, down to 90% of MaxTracked.
func (f *failures[K]) sweep(now int64) {
	for k := range f.m {
		f.recent(k, now)
	}
	for k := range f.m {
		if len(f.m) < MaxTracked*9/10 {
			break
		}
		delete(f.m, k)
	}
}
