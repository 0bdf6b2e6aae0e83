package cmd

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// cmdPGLog reads the test server's log, where the statements of a role
// with log_statement = 'ddl' appear:
//
//	pglog mark                  remember where the log ends now
//	pglog droprole NAMES_FILE   every role named in the file (one a line)
//	                            was dropped by exactly one DROP ROLE
//	                            statement since the mark
//
// droprole prints how many roles were dropped once each. Lines of other
// tests (the server is shared) are ignored: only the names in the file
// count.
func cmdPGLog(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! pglog")
	}
	p := pgOf(ts)
	if p.srv.LogFile == "" {
		ts.Fatalf("pglog: the server's log file is unknown (set LESSOR_TEST_PG_LOG)")
	}
	markFile := ts.MkAbs(".pglog-mark")
	switch {
	case len(args) == 1 && args[0] == "mark":
		fi, err := os.Stat(p.srv.LogFile)
		if err != nil {
			ts.Fatalf("pglog: %v", err)
		}
		ts.Check(os.WriteFile(markFile, []byte(strconv.FormatInt(fi.Size(), 10)), 0o600))
	case len(args) == 2 && args[0] == "droprole":
		b, err := os.ReadFile(markFile)
		if err != nil {
			ts.Fatalf("pglog droprole: run pglog mark first")
		}
		from, _ := strconv.ParseInt(string(b), 10, 64)
		f, err := os.Open(p.srv.LogFile)
		if err != nil {
			ts.Fatalf("pglog: %v", err)
		}
		defer f.Close()
		if _, err := f.Seek(from, io.SeekStart); err != nil {
			ts.Fatalf("pglog: %v", err)
		}
		drops, err := dropRoleCounts(f)
		if err != nil {
			ts.Fatalf("pglog: %v", err)
		}
		var bad []string
		names := strings.Fields(ts.ReadFile(args[1]))
		seen := map[string]bool{}
		for _, n := range names {
			if seen[n] {
				bad = append(bad, fmt.Sprintf("%s is named twice in %s", n, args[1]))
			}
			seen[n] = true
			if c := drops[n]; c != 1 {
				bad = append(bad, fmt.Sprintf("%s: dropped %d times", n, c))
			}
		}
		if len(names) == 0 {
			ts.Fatalf("pglog droprole: %s names no role", args[1])
		}
		sort.Strings(bad)
		if len(bad) > 0 {
			ts.Fatalf("pglog droprole: %d of %d roles not dropped exactly once:\n%s", len(bad), len(names), strings.Join(bad, "\n"))
		}
		fmt.Fprintf(ts.Stdout(), "%d roles dropped once each\n", len(names))
	default:
		ts.Fatalf("usage: pglog mark | pglog droprole NAMES_FILE")
	}
}

// logEntryStart matches the first line of a log entry in the test
// servers' format ('%m [%p] …'); continuation lines start with a tab.
var logEntryStart = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`)

// logStatement finds the statement text of an entry that logs one: simple
// protocol ("statement: …") or extended ("execute <unnamed>: …").
var logStatement = regexp.MustCompile(`(?s)LOG:  (?:statement|execute [^:]*): (.*)$`)

var dropRole = regexp.MustCompile(`(?i)\bDROP\s+ROLE\s+(?:IF\s+EXISTS\s+)?`)

// dropRoleCounts counts, per role name, the DROP ROLE statements in a
// server log that name it.
func dropRoleCounts(r io.Reader) (map[string]int, error) {
	counts := map[string]int{}
	var entry bytes.Buffer
	flush := func() {
		m := logStatement.FindStringSubmatch(entry.String())
		entry.Reset()
		if m == nil {
			return
		}
		stmt := m[1]
		for _, loc := range dropRole.FindAllStringIndex(stmt, -1) {
			for _, name := range identList(stmt[loc[1]:]) {
				counts[name]++
			}
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		if logEntryStart.MatchString(line) {
			flush()
		} else if !strings.HasPrefix(line, "\t") {
			// Not ours to read (a partial line at the mark, another
			// program's output): ends the entry.
			flush()
			continue
		}
		entry.WriteString(strings.TrimPrefix(line, "\t"))
		entry.WriteByte('\n')
	}
	flush()
	return counts, sc.Err()
}

// identList reads a comma-separated list of SQL identifiers (quoted or
// not) from the start of s, up to the first thing that is not one.
func identList(s string) []string {
	var names []string
	for {
		s = strings.TrimLeft(s, " \t\n")
		var name string
		switch {
		case strings.HasPrefix(s, `"`):
			var b strings.Builder
			i := 1
			for ; i < len(s); i++ {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i++
						continue
					}
					break
				}
				b.WriteByte(s[i])
			}
			if i >= len(s) {
				return names
			}
			name, s = b.String(), s[i+1:]
		default:
			i := 0
			for i < len(s) && (s[i] == '_' || s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z' || i > 0 && (s[i] >= '0' && s[i] <= '9' || s[i] == '$')) {
				i++
			}
			if i == 0 {
				return names
			}
			name, s = strings.ToLower(s[:i]), s[i:]
		}
		names = append(names, name)
		s = strings.TrimLeft(s, " \t\n")
		if !strings.HasPrefix(s, ",") {
			return names
		}
		s = s[1:]
	}
}

func TestDropRoleCounts(t *testing.T) {
	log := `2026-12-05 05:13:59.519 UTC [1] a@b LOG:  statement: ALTER ROLE "v-x" NOLOGIN;
2026-12-05 05:13:59.520 UTC [1] a@b LOG:  execute <unnamed>: DROP ROLE IF EXISTS "v-x", "v-y",
	"we""ird", plain
2026-12-05 05:13:59.521 UTC [2] a@b LOG:  statement: SELECT 1; drop role "v-y";
2026-12-05 05:13:59.522 UTC [2] a@b DETAIL:  DROP ROLE "not-a-statement"
2026-12-05 05:13:59.523 UTC [2] a@b LOG:  statement: RESET ROLE; DROP ROLE "v-z";
`
	got, err := dropRoleCounts(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"v-x": 1, "v-y": 2, `we"ird`: 1, "plain": 1, "v-z": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("counts = %v, want %v", got, want)
	}
}
