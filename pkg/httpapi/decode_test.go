package httpapi

import (
	"errors"
	"strings"
	"testing"
)

// TestJSONShapeBounds: a body at the bounds decodes, one past them is a
// 400 that says which bound, whatever strings in it look like.
func TestJSONShapeBounds(t *testing.T) {
	nest := func(n int) string { // n levels below a top-level object
		return `{"a":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`
	}
	members := func(n int) string {
		m := make([]string, n)
		for i := range m {
			m[i] = `"k` + strings.Repeat("x", i%3) + `":0`
		}
		return "{" + strings.Join(m, ",") + "}"
	}
	elements := func(n int) string { // n elements, the array one value more
		return `{"a":[` + strings.TrimSuffix(strings.Repeat("{},", n), ",") + `]}`
	}
	tests := []struct {
		name, body, msg string // msg "" for a body that decodes
	}{
		{"at the depth bound", nest(maxDataDepth - 1), ""},
		{"past the depth bound", nest(maxDataDepth), "error parsing JSON: nested deeper than 32 levels"},
		{"top level too deep", strings.Repeat("[", 40) + strings.Repeat("]", 40), "error parsing JSON: nested deeper than 32 levels"},
		{"brackets in strings are no nesting", `{"a":"` + strings.Repeat(`[{\"`, 100) + `","b":"\\"}`, ""},
		{"commas in strings are no values", `{"a":"` + strings.Repeat(`,`, 2*maxDataValues) + `"}`, ""},
		{"at the value bound", members(maxDataValues), ""},
		{"past the value bound", members(maxDataValues + 1), "error parsing JSON: more than 10000 values"},
		{"empty objects count", elements(maxDataValues - 1), ""},
		{"empty objects past the bound", elements(maxDataValues), "error parsing JSON: more than 10000 values"},
		{"still refused when malformed", `{"a":` + strings.Repeat("[", 100), "error parsing JSON: nested deeper than 32 levels"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseBody("application/json", []byte(tc.body))
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var he *httpError
			if !errors.As(err, &he) || he.status != 400 || he.msg != tc.msg {
				t.Fatalf("error %v, want 400 %q", err, tc.msg)
			}
		})
	}
}

// TestShapeRefusedBeforeDecoding: a body past the bounds is refused
// before the decoder builds anything from it, so a small body cannot
// cost a large tree: refusing 100000 empty objects (300 kB) allocates
// next to nothing, where decoding them allocated 100000 maps.
func TestShapeRefusedBeforeDecoding(t *testing.T) {
	body := []byte(`{"a":[` + strings.Repeat("{},", 100000) + `{}]}`)
	allocs := testing.AllocsPerRun(5, func() {
		if _, err := parseBody("application/json", body); err == nil {
			t.Fatal("100001 values accepted")
		}
	})
	if allocs > 10 {
		t.Fatalf("refusing the body took %v allocations", allocs)
	}
}

// TestParameterCountBounds: a form body or a query string of more than
// maxDataValues parameters is a 400, refused before it is parsed.
func TestParameterCountBounds(t *testing.T) {
	form := func(n int) []byte { return []byte(strings.TrimSuffix(strings.Repeat("a=1&", n), "&")) }
	if _, err := parseBody("application/x-www-form-urlencoded", form(maxDataValues)); err != nil {
		t.Fatalf("form at the bound: %v", err)
	}
	_, err := parseBody("application/x-www-form-urlencoded", form(maxDataValues+1))
	var he *httpError
	if !errors.As(err, &he) || he.status != 400 || he.msg != "error parsing form body: more than 10000 parameters" {
		t.Fatalf("form past the bound: %v", err)
	}
}
