package oauth

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestJTICache(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	j := newJTICache(3)
	first := func(id string, exp, now time.Duration) (bool, error) {
		return j.first(id, t0.Add(exp), t0.Add(now))
	}
	steps := []struct {
		id       string
		exp, now time.Duration
		want     bool
		wantErr  error
	}{
		{"a", time.Minute, 0, true, nil},
		{"a", time.Minute, time.Second, false, nil}, // a replay
		{"b", 5 * time.Minute, time.Second, true, nil},
		{"c", 2 * time.Minute, time.Second, true, nil},
		// Full of live ids: no room, and not a replay.
		{"d", 2 * time.Minute, 2 * time.Second, false, errTooManyAssertions},
		// a has expired: room again, and a may be used anew.
		{"a", 3 * time.Minute, time.Minute, true, nil},
		{"d", 3 * time.Minute, time.Minute, false, errTooManyAssertions},
		// The old expiry of a leaves the heap without forgetting the new a.
		{"d", 4 * time.Minute, 2 * time.Minute, true, nil}, // c expired
		{"a", 4 * time.Minute, 2 * time.Minute, false, nil},
	}
	for i, st := range steps {
		got, err := first(st.id, st.exp, st.now)
		if got != st.want || !errors.Is(err, st.wantErr) {
			t.Errorf("step %d: first(%s, exp +%v, at +%v) = %v, %v; want %v, %v", i+1, st.id, st.exp, st.now, got, err, st.want, st.wantErr)
		}
	}
}

// BenchmarkJTICacheFull measures an assertion's id check when the cache
// holds as many live ids as it can and one expires per new one: a busy
// private_key_jwt client population in its steady state.
func BenchmarkJTICacheFull(b *testing.B) {
	j := newJTICache(maxJTIs)
	t0 := time.Now()
	ids := make([]string, maxJTIs+b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("cli_%d\x00%d", i%100, i)
	}
	for i := range maxJTIs {
		j.first(ids[i], t0.Add(time.Duration(i+1)), t0)
	}
	b.ResetTimer()
	for i := range b.N {
		now := t0.Add(time.Duration(i + 1))
		if ok, err := j.first(ids[maxJTIs+i], now.Add(time.Duration(maxJTIs)), now); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
