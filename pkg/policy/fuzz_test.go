package policy

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzParse feeds arbitrary text to the parser and checks that it never
// panics, that every error is a *ParseError shared by Format, and that a
// policy that parses survives Format unchanged in meaning, formats
// idempotently, and builds an ACL whose exact rules report the union of
// their blocks.
func FuzzParse(f *testing.F) {
	f.Add(seedAdmin)
	f.Add(seedApps)
	f.Add(DefaultPolicy)
	f.Fuzz(func(t *testing.T, text string) {
		p, err := Parse("fuzz", text)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ParseError: %v", err, err)
			}
			if _, ferr := Format(text); ferr == nil {
				t.Fatalf("Format accepted what Parse refused: %v", err)
			}
			return
		}
		out, err := Format(text)
		if errors.Is(err, ErrFormatChangesMeaning) {
			return
		}
		if err != nil {
			t.Fatalf("Format failed on a valid policy: %v", err)
		}
		q, err := Parse("fuzz", out)
		if err != nil {
			t.Fatalf("formatted policy does not parse: %v\n%s", err, out)
		}
		if !samePaths(p.Paths, q.Paths) {
			t.Fatalf("Format changed the policy:\n%+v\n%+v\n%s", p.Paths, q.Paths, out)
		}
		if again, err := Format(out); err != nil || again != out {
			t.Fatalf("Format is not idempotent (%v):\n%s\n---\n%s", err, out, again)
		}

		a, err := NewACL(p)
		if err != nil {
			t.Fatalf("NewACL on a parsed policy: %v", err)
		}
		union := map[string]uint16{}
		unmet := map[string]bool{}
		for _, pr := range p.Paths {
			for _, c := range pr.Capabilities {
				union[pr.Path] |= capBits[c]
			}
			// A block that asks for what lessor cannot give (a wrapped
			// response, MFA) makes its path's rule grant nothing.
			unmet[pr.Path] = unmet[pr.Path] || pr.Unmet() != ""
		}
		for _, pr := range p.Paths {
			a.Allow("read", pr.Path, map[string]any{"x": "y"})
			if pr.Prefix || pr.HasSegmentWildcard {
				continue
			}
			bits := union[pr.Path]
			if bits&capBits[CapDeny] != 0 || unmet[pr.Path] {
				bits = capBits[CapDeny]
			}
			want := capsOf(&rule{bits: bits})
			if got := a.Capabilities(pr.Path); !reflect.DeepEqual(got, want) {
				t.Fatalf("Capabilities(%q) = %q, want %q", pr.Path, got, want)
			}
		}
	})
}
