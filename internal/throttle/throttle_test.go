package throttle

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func TestAddrKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ip   string
		want string
	}{
		{"198.51.100.7", "198.51.100.7/32"},
		{"::ffff:198.51.100.7", "198.51.100.7/32"},
		{"2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
	}
	for _, tt := range tests {
		if got := AddrKey(netip.MustParseAddr(tt.ip)).String(); got != tt.want {
			t.Errorf("AddrKey(%s) = %s, want %s", tt.ip, got, tt.want)
		}
	}
	if got := AddrKey(netip.Addr{}); got.IsValid() {
		t.Errorf("AddrKey(invalid) = %s, want the invalid prefix", got)
	}
}

// TestLimits checks the per-account and per-address limits, that every
// address of one IPv6 /64 shares a limit, and that failures leave the
// window.
func TestLimits(t *testing.T) {
	t.Parallel()
	const window = 15 * time.Minute
	tests := []struct {
		name     string
		acct     func(i int) string
		ip       func(i int) netip.Addr
		allowed  int // attempts let through before the first refusal
		refusing string
	}{
		{"one account, many addresses", func(int) string { return "alice" },
			func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}) }, 3, "account"},
		{"one address, many accounts", func(i int) string { return fmt.Sprint("user", i) },
			func(int) netip.Addr { return netip.MustParseAddr("198.51.100.7") }, 5, "address"},
		{"one IPv6 /64, a fresh address each time", func(i int) string { return fmt.Sprint("user", i) },
			func(i int) netip.Addr { return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 1)}) }, 5, "/64"},
		{"unknown address: per account only", func(int) string { return "alice" },
			func(int) netip.Addr { return netip.Addr{} }, 3, "account"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			th := New(3, 5, window)
			for i := range tt.allowed {
				if _, ok := th.Begin(tt.acct(i), tt.ip(i), t0); !ok {
					t.Fatalf("attempt %d refused, want %d let through", i+1, tt.allowed)
				}
			}
			if _, ok := th.Begin(tt.acct(tt.allowed), tt.ip(tt.allowed), t0.Add(window-time.Second)); ok {
				t.Fatalf("attempt %d let through inside the window, want refused per %s", tt.allowed+1, tt.refusing)
			}
			if _, ok := th.Begin(tt.acct(tt.allowed), tt.ip(tt.allowed), t0.Add(window)); !ok {
				t.Errorf("attempt refused once the failures left the window")
			}
		})
	}
}

// TestConcurrentAttemptsCount checks that attempts count from the moment
// they begin: of many concurrent guesses, only the limit gets through.
func TestConcurrentAttemptsCount(t *testing.T) {
	t.Parallel()
	th := New(10, 1000, time.Minute)
	passed := concurrently(100, func() bool {
		_, ok := th.Begin("alice", netip.MustParseAddr("198.51.100.7"), t0)
		return ok
	})
	if passed != 10 {
		t.Errorf("%d of 100 concurrent attempts let through, want 10", passed)
	}
}

// concurrently runs f n times at once and returns how many returned true.
func concurrently(n int, f func() bool) int {
	var wg sync.WaitGroup
	var count atomic.Int64
	for range n {
		wg.Go(func() {
			if f() {
				count.Add(1)
			}
		})
	}
	wg.Wait()
	return int(count.Load())
}

func TestSucceedAndUndo(t *testing.T) {
	t.Parallel()
	ip := netip.MustParseAddr("198.51.100.7")
	fail := func(th *Throttle, n int) {
		for range n {
			if _, ok := th.Begin("alice", ip, t0); !ok {
				t.Fatal("attempt refused under the limit")
			}
		}
	}

	// Succeed forgets the account's failures and the attempt's address
	// failure, not the address's others.
	th := New(3, 3, time.Minute)
	fail(th, 2)
	a, _ := th.Begin("alice", ip, t0)
	th.Succeed(a)
	if _, ok := th.Begin("alice", ip, t0); !ok {
		t.Fatal("refused after a success: the address has 2 failures of 3")
	}
	if _, ok := th.Begin("bob", ip, t0); ok {
		t.Fatal("address let through with 3 failures of 3: a success must not forget the address's other failures")
	}

	// Undo forgets the attempt alone.
	th = New(3, 10, time.Minute)
	fail(th, 2)
	a, _ = th.Begin("alice", ip, t0)
	th.Undo(a)
	if _, ok := th.Begin("alice", ip, t0); !ok {
		t.Fatal("refused with 2 failures of 3 after Undo")
	}
	if _, ok := th.Begin("alice", ip, t0); ok {
		t.Fatal("let through with 3 failures of 3: Undo must not forget the account's other failures")
	}
}

// TestSprayKeepsLiveCounters checks that a spray of distinct addresses
// past MaxTracked neither grows memory without bound nor wipes the
// counters of an address that is still failing: when the bound is
// reached, the addresses whose failures have left the window go first.
func TestSprayKeepsLiveCounters(t *testing.T) {
	t.Parallel()
	th := New(1<<30, 3, time.Minute)
	// Old failures from a spray of addresses, filling the throttle up to
	// one short of its bound...
	for i := range MaxTracked - 1 {
		th.Begin("x", netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), t0.Add(-2*time.Minute))
	}
	// ...then an address that reaches its limit now, and a fresh spray.
	attacker := netip.MustParseAddr("203.0.113.9")
	for range 3 {
		if _, ok := th.Begin("x", attacker, t0); !ok {
			t.Fatal("attempt refused under the limit")
		}
	}
	for i := range MaxTracked / 4 {
		th.Begin("x", netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}), t0)
	}
	if n := len(th.addrs.m); n > MaxTracked {
		t.Errorf("%d addresses tracked, want at most %d", n, MaxTracked)
	}
	if _, ok := th.Begin("x", attacker, t0); ok {
		t.Error("an address at its limit was let through after a spray of other addresses")
	}
}

func TestAuditBudget(t *testing.T) {
	t.Parallel()
	a := NewAuditBudget(2, 5, time.Minute)
	take := func(ip string, at time.Time) (int, bool) {
		var addr netip.Addr
		if ip != "" {
			addr = netip.MustParseAddr(ip)
		}
		return a.Take(addr, at)
	}
	steps := []struct {
		ip             string
		at             time.Duration
		wantOK         bool
		wantSuppressed int
	}{
		{"2001:db8::1", 0, true, 0},
		{"2001:db8::2", 0, true, 0},  // the same /64
		{"2001:db8::3", 0, false, 0}, // its budget is spent
		{"198.51.100.1", 0, true, 1}, // says one was not audited
		{"198.51.100.1", 0, true, 0},
		{"198.51.100.1", 0, false, 0},
		{"", 0, true, 1},              // an unknown address has its own budget
		{"198.51.100.2", 0, false, 0}, // five in all: the bound for all
		{"198.51.100.2", time.Minute, true, 1},
		{"2001:db8::4", time.Minute, true, 0}, // a new period
	}
	for i, st := range steps {
		suppressed, ok := take(st.ip, t0.Add(st.at))
		if ok != st.wantOK || suppressed != st.wantSuppressed {
			t.Errorf("step %d (%q at +%v): Take = %d, %v; want %d, %v", i+1, st.ip, st.at, suppressed, ok, st.wantSuppressed, st.wantOK)
		}
	}
}

// TestAuditBudgetSprayIsBounded checks that a spray of addresses neither
// grows memory without bound nor gets more entries than the bound for all.
func TestAuditBudgetSprayIsBounded(t *testing.T) {
	t.Parallel()
	a := NewAuditBudget(10, 600, time.Minute)
	audited := 0
	for i := range 2 * MaxTracked {
		if _, ok := a.Take(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), t0.Add(time.Duration(i)*time.Millisecond)); ok {
			audited++
		}
	}
	if n := len(a.addrs); n > MaxTracked {
		t.Errorf("%d addresses tracked, want at most %d", n, MaxTracked)
	}
	// 131,072 ms is 2 minutes and 11 s: three periods.
	if audited > 3*600 {
		t.Errorf("%d entries audited in three periods, want at most %d", audited, 3*600)
	}
}

// TestFailDecidesWithTheCount checks Fail and Allowed, for guesses that
// are looked up before they are counted: of many concurrent wrong guesses
// exactly the limit are told they are wrong, and right guesses, checked
// with Allowed, never count.
func TestFailDecidesWithTheCount(t *testing.T) {
	t.Parallel()
	th := New(10, 1000, time.Minute)
	ip := netip.MustParseAddr("198.51.100.7")
	for range 100 {
		if !th.Allowed("alice", ip, t0) {
			t.Fatal("a right guess counted")
		}
	}
	told := concurrently(100, func() bool { return th.Fail("alice", ip, t0) })
	if told != 10 {
		t.Errorf("%d of 100 concurrent wrong guesses within the limit, want 10", told)
	}
	if th.Allowed("alice", ip, t0) {
		t.Error("Allowed past the limit")
	}
	if !th.Allowed("bob", ip, t0) {
		t.Error("another account refused: the address has 10 failures of 1000")
	}
	// Refused guesses did not count: the address has exactly 10.
	if n := len(th.addrs.recent(AddrKey(ip), t0.UnixNano())); n != 10 {
		t.Errorf("the address has %d failures counted, want 10 (refused guesses do not count)", n)
	}
	if !th.Allowed("alice", ip, t0.Add(time.Minute)) {
		t.Error("refused once the failures left the window")
	}
}
