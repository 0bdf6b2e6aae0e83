package randstr

import (
	"bytes"
	"crypto/rand"
	"io"
	"strings"
	"testing"
)

// counter reads 0, 1, 2, … 255, 0, …
type counter struct{ next byte }

func (c *counter) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = c.next
		c.next++
	}
	return len(p), nil
}

func TestStringRejectsBiasedBytes(t *testing.T) {
	// 62 symbols: bytes 248..255 would favour the first eight symbols, so
	// they are skipped; 62, 63 and 247 wrap around the alphabet.
	r := io.MultiReader(bytes.NewReader([]byte{248, 249, 255, 0, 62, 63, 247, 61}), &counter{})
	got, err := String(r, Base62, 5)
	if err != nil {
		t.Fatal(err)
	}
	if want := "001zz"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestStringIsUniform(t *testing.T) {
	// Every byte value once: each of the 62 symbols is drawn exactly four
	// times from the 248 accepted bytes.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	got, err := String(io.MultiReader(bytes.NewReader(all), bytes.NewReader(all)), Base62, 248)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range Base62 {
		if n := strings.Count(got, string(c)); n != 4 {
			t.Errorf("symbol %c drawn %d times, want 4", c, n)
		}
	}
}

func TestStringLengths(t *testing.T) {
	for _, n := range []int{0, 1, 20, 1024} {
		got, err := String(rand.Reader, Base62, n)
		if err != nil || len(got) != n || strings.Trim(got, Base62) != "" {
			t.Errorf("String(%d) = %q, %v", n, got, err)
		}
	}
	if _, err := String(rand.Reader, Base62, -1); err == nil {
		t.Error("negative length accepted")
	}
	if _, err := String(rand.Reader, "", 3); err == nil {
		t.Error("empty alphabet accepted")
	}
	if _, err := String(bytes.NewReader([]byte{1, 2}), Base62, 20); err == nil || !strings.Contains(err.Error(), "read random") {
		t.Errorf("short reader: %v", err)
	}
}
