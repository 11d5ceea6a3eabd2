package ids

import (
	"testing"
	"time"
)

func TestNewSortsByTimeAndIsUnique(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	seen := map[string]bool{}
	prev := ""
	for i := range 2000 {
		id := New(Token, base.Add(time.Duration(i)*time.Millisecond))
		if !Valid(Token, id) {
			t.Fatalf("New returned invalid id %q", id)
		}
		if id <= prev {
			t.Fatalf("id %q does not sort after %q", id, prev)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id], prev = true, id
	}
}

func TestValid(t *testing.T) {
	t.Parallel()
	good := New(API, time.Now())
	tests := map[string]bool{
		good:                        true,
		"":                          false,
		"api_":                      false,
		"tok" + good[3:]:            false,
		good + "x":                  false,
		good[:len(good)-1]:          false,
		good[:10] + "-" + good[11:]: false,
	}
	for in, want := range tests {
		if got := Valid(API, in); got != want {
			t.Errorf("Valid(%q) = %v, want %v", in, got, want)
		}
	}
}
