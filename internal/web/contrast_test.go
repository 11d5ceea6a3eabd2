package web

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestColoursMeetWCAGContrast reads the stylesheet's colour variables, in
// the light scheme and the dark one, and checks the contrast ratios WCAG
// 2.2 level AA asks for: 4.5:1 for text (§1.4.3), 3:1 for the border that
// is all that shows where a field or a secondary button is (§1.4.11).
func TestColoursMeetWCAGContrast(t *testing.T) {
	t.Parallel()
	css, err := files.ReadFile("static/jeton.css")
	if err != nil {
		t.Fatal(err)
	}
	light, dark, ok := strings.Cut(string(css), "@media (prefers-color-scheme: dark)")
	if !ok {
		t.Fatal("no dark scheme in the stylesheet")
	}
	for _, scheme := range []struct {
		name string
		vars map[string]string
	}{
		{"light", cssColours(light)},
		{"dark", withDefaults(cssColours(dark), cssColours(light))},
	} {
		for _, tt := range []struct {
			fg, bg string
			min    float64
		}{
			{"text", "card", 4.5},
			{"text", "field", 4.5},
			{"muted", "card", 4.5},
			{"muted", "soft", 4.5},
			{"on-accent", "accent", 4.5},
			{"on-accent", "accent-hover", 4.5},
			{"accent", "card", 4.5}, // links
			{"alert-text", "alert-bg", 4.5},
			{"field-border", "card", 3},
			{"field-border", "field", 3},
		} {
			fg, bg := scheme.vars[tt.fg], scheme.vars[tt.bg]
			if fg == "" || bg == "" {
				t.Errorf("%s: --%s or --%s is not a colour the test can read", scheme.name, tt.fg, tt.bg)
				continue
			}
			if r := contrast(fg, bg); r < tt.min {
				t.Errorf("%s: --%s (%s) on --%s (%s) has contrast %.2f:1, want at least %.1f:1", scheme.name, tt.fg, fg, tt.bg, bg, r, tt.min)
			}
		}
	}
}

var colourVar = regexp.MustCompile(`--([a-z-]+):\s*(#[0-9a-fA-F]{6})\s*;`)

// cssColours returns the #rrggbb custom properties declared in css.
func cssColours(css string) map[string]string {
	out := map[string]string{}
	for _, m := range colourVar.FindAllStringSubmatch(css, -1) {
		out[m[1]] = m[2]
	}
	return out
}

func withDefaults(m, defaults map[string]string) map[string]string {
	for k, v := range defaults {
		if _, ok := m[k]; !ok {
			m[k] = v
		}
	}
	return m
}

// contrast is the WCAG contrast ratio of two #rrggbb colours.
func contrast(a, b string) float64 {
	la, lb := luminance(a), luminance(b)
	return (math.Max(la, lb) + 0.05) / (math.Min(la, lb) + 0.05)
}

// luminance is the WCAG relative luminance of a #rrggbb colour.
func luminance(hex string) float64 {
	var rgb [3]float64
	for i := range rgb {
		v, _ := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		c := float64(v) / 255
		if c <= 0.04045 {
			rgb[i] = c / 12.92
		} else {
			rgb[i] = math.Pow((c+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*rgb[0] + 0.7152*rgb[1] + 0.0722*rgb[2]
}
