package verify_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies fails if the verify package imports, even indirectly,
// anything beyond the standard library, go-jose, and packages of this
// module that themselves import only the standard library.
func TestDependencies(t *testing.T) {
	t.Parallel()
	if bad := disallowedDeps(t, "github.com/jetonhq/jeton/verify"); len(bad) > 0 {
		t.Errorf("verify depends on:\n%s", strings.Join(bad, "\n"))
	}
	// The check itself works: the token service is not light.
	if bad := disallowedDeps(t, "github.com/jetonhq/jeton/internal/tokens"); len(bad) == 0 {
		t.Error("the dependency check finds nothing wrong with internal/tokens")
	}
}

// disallowedDeps lists the dependencies of pkg (go list -deps) that break
// the rule.
func disallowedDeps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-json", pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	const module = "github.com/jetonhq/jeton/"
	var bad []string
	seen := 0
	for dec := json.NewDecoder(strings.NewReader(string(out))); dec.More(); {
		var p struct {
			ImportPath string
			Standard   bool
			Deps       []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		seen++
		switch {
		case p.Standard:
		case p.ImportPath == pkg:
		case p.ImportPath == "github.com/go-jose/go-jose/v4" || strings.HasPrefix(p.ImportPath, "github.com/go-jose/go-jose/v4/"):
		case strings.HasPrefix(p.ImportPath, module):
			// A package of this module is allowed only if it is stdlib-only.
			for _, d := range p.Deps {
				if !isStdlib(d) {
					bad = append(bad, p.ImportPath+" -> "+d)
				}
			}
		default:
			bad = append(bad, p.ImportPath)
		}
	}
	if seen < 10 {
		t.Fatalf("go list %s returned only %d packages", pkg, seen)
	}
	return bad
}

// isStdlib reports whether an import path belongs to the standard library
// (its first element has no dot; vendored packages of the standard library
// are listed as "vendor/...").
func isStdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}
