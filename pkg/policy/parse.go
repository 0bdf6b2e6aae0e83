package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	hclparser "github.com/hashicorp/hcl/hcl/parser"
	"github.com/hashicorp/hcl/hcl/token"

	"github.com/lessorhq/lessor/pkg/hclnest"
)

// doc is a parsed policy in the shape Format prints: the items in the
// order written, each value already rendered canonically, and the
// comments to put back by position.
type doc struct {
	nodes    []*node
	comments []*ast.Comment
	// json is set for JSON input, whose parser records no positions for
	// brackets, so the author's blank lines cannot be told apart.
	json bool
}

// node is one key of the policy. A block is printed `header {`, another
// object `header = {`, a leaf `header = value`.
type node struct {
	header string
	value  string
	object bool
	block  bool
	kids   []*node
	// start is the first token, open the "{" of an object (or the
	// second key of a multi-key item, which stands for it), end the last
	// token; comments are placed relative to them.
	start, open, end token.Pos
}

// parse turns text into a Policy (without its name) and the doc that
// Format prints.
func parse(text string) (*Policy, *doc, error) {
	if len(text) > MaxSize {
		return nil, nil, ErrTooLarge
	}
	if hclnest.Deeper(text) {
		return nil, nil, &ParseError{Msg: fmt.Sprintf("braces and brackets nest deeper than %d levels", hclnest.Limit)}
	}
	file, isJSON, err := parseAST(text)
	if err != nil {
		return nil, nil, err
	}
	p := &Policy{Raw: text}
	d := &doc{comments: flattenComments(file.Comments), json: isJSON}
	list, ok := file.Node.(*ast.ObjectList)
	if !ok {
		return nil, nil, &ParseError{Line: file.Node.Pos().Line, Msg: "expected path blocks"}
	}
	seenName := false
	for _, item := range list.Items {
		key, line, err := firstKey(item)
		if err != nil {
			return nil, nil, err
		}
		switch key {
		case "name":
			if seenName {
				return nil, nil, &ParseError{Line: line, Msg: `duplicate key "name"`}
			}
			seenName = true
			v := valueOf(item)
			if _, err := stringLit(v); err != nil {
				return nil, nil, &ParseError{Line: line, Msg: "name must be a string"}
			}
			rendered, _ := renderValue(v)
			d.nodes = append(d.nodes, &node{header: "name", value: rendered, start: item.Pos(), end: endPos(v)})
		case "path":
			entries, _, _, ok := members(item)
			if !ok {
				return nil, nil, &ParseError{Line: line, Msg: `path must be followed by a quoted pattern and a block`}
			}
			for i, e := range entries {
				start := e.Pos()
				if i == 0 {
					start = item.Pos()
				}
				rules, n, err := parseBlock(e, start)
				if err != nil {
					return nil, nil, err
				}
				p.Paths = append(p.Paths, rules)
				d.nodes = append(d.nodes, n)
			}
		default:
			return nil, nil, &ParseError{Line: line, Msg: fmt.Sprintf("invalid key %q", key)}
		}
	}
	return p, d, nil
}

// parseAST runs the HCL (or, for text starting with "{", JSON) parser.
// Its syntax errors keep their line. The hcl v1 parser is old and has
// panicked on malformed input before; a policy arrives from users, so a
// panic becomes an error rather than a crash.
func parseAST(text string) (file *ast.File, isJSON bool, err error) {
	isJSON = strings.HasPrefix(strings.TrimLeftFunc(text, unicode.IsSpace), "{")
	if isJSON {
		if err := checkJSON(text); err != nil {
			return nil, true, err
		}
	}
	defer func() {
		if r := recover(); r != nil {
			file, err = nil, &ParseError{Msg: fmt.Sprintf("malformed policy: %v", r)}
		}
	}()
	if isJSON {
		file, err = hcl.ParseString(text)
	} else {
		// Duplicate keys are found below, with the path they are in; the
		// parser's own check would only name the key.
		file, err = hclparser.ParseDontErrorOnDuplicateKeys([]byte(text))
	}
	if err != nil {
		var pe *hclparser.PosError
		if errors.As(err, &pe) {
			return nil, isJSON, &ParseError{Line: pe.Pos.Line, Msg: pe.Err.Error()}
		}
		// The JSON scanner's errors are plain text: "line:column: msg".
		if m := scannerError().FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, isJSON, &ParseError{Line: line, Msg: m[2]}
		}
		return nil, isJSON, &ParseError{Msg: err.Error()}
	}
	if file == nil || file.Node == nil {
		return nil, isJSON, &ParseError{Msg: "malformed policy"}
	}
	return file, isJSON, nil
}

// scannerError is compiled on first use, by a malformed JSON policy,
// rather than at the start of every lessor process.
var scannerError = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(\d+):\d+: (.*)$`) })

// checkJSON finds, with their line, the errors that hcl's JSON parser
// reports without a position, and refuses what it would get silently
// wrong: it drops booleans and flattens nested lists inside a list, which
// would turn `"allowed_parameters": {"x": [true]}` into "any value".
func checkJSON(text string) error {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var stack []json.Delim
	for {
		off := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return &ParseError{Line: lineAt(text, se.Offset), Msg: "invalid JSON: " + se.Error()}
			}
			return &ParseError{Line: lineAt(text, dec.InputOffset()), Msg: "invalid JSON: " + err.Error()}
		}
		inList := len(stack) > 0 && stack[len(stack)-1] == '['
		// off is where the previous token ended; this one starts at its
		// first byte after the separators. Counted only for an error, so
		// that a long policy is not scanned once per token.
		line := func() int {
			rest := text[off:]
			return lineAt(text, off+int64(len(rest)-len(strings.TrimLeft(rest, " \t\r\n,:"))))
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '[':
				if inList {
					return &ParseError{Line: line(), Msg: "a list may not hold a list"}
				}
				stack = append(stack, t)
			case '{':
				stack = append(stack, t)
			default:
				stack = stack[:len(stack)-1]
			}
		case bool:
			if inList {
				return &ParseError{Line: line(), Msg: "a list in a JSON policy may not hold booleans; quote them"}
			}
		}
		if len(stack) == 0 && dec.More() {
			return &ParseError{Line: lineAt(text, dec.InputOffset()), Msg: "invalid JSON: data after the top-level object"}
		}
	}
}

// lineAt returns the 1-based line holding byte offset off of text.
func lineAt(text string, off int64) int {
	if off > int64(len(text)) {
		off = int64(len(text))
	}
	if off < 0 {
		off = 0
	}
	return 1 + strings.Count(text[:off], "\n")
}

// pathBlockKeys are the keys a path block may hold. Vault's Enterprise
// keys parse so that such policies load; see PathRules.
var pathBlockKeys = map[string]bool{
	"comment": true, "policy": true, "capabilities": true,
	"allowed_parameters": true, "denied_parameters": true, "required_parameters": true,
	"min_wrapping_ttl": true, "max_wrapping_ttl": true,
	"mfa_methods": true, "control_group": true,
}

// parseBlock parses one `"<pattern>" { ... }` entry of a path key; start
// is where its `path` keyword is.
func parseBlock(e *ast.ObjectItem, start token.Pos) (PathRules, *node, error) {
	raw, line, err := firstKey(e)
	if err != nil {
		return PathRules{}, nil, err
	}
	fail := func(line int, format string, args ...any) error {
		return &ParseError{Line: line, Path: raw, Msg: fmt.Sprintf(format, args...), inBlock: true}
	}
	pattern := strings.TrimPrefix(raw, "/")
	switch {
	case pattern == "":
		return PathRules{}, nil, fail(line, "empty path")
	case strings.Contains(pattern, "+*"):
		return PathRules{}, nil, fail(line, "invalid use of wildcards ('+*' is forbidden)")
	}
	items, open, end, ok := members(e)
	if !ok {
		return PathRules{}, nil, fail(line, "expected a block { ... }")
	}
	pr := PathRules{
		Path:               pattern,
		Prefix:             strings.HasSuffix(pattern, "*"),
		HasSegmentWildcard: isSegmentWildcard(pattern),
		Line:               line,
	}
	n := &node{header: "path " + quote(raw), object: true, block: true, start: start, open: open, end: end}

	var bits uint16
	seen := map[string]bool{}
	for _, f := range items {
		key, kline, err := firstKey(f)
		if err != nil {
			return PathRules{}, nil, err
		}
		if !pathBlockKeys[key] {
			return PathRules{}, nil, fail(kline, "invalid key %q", key)
		}
		if seen[key] {
			return PathRules{}, nil, fail(kline, "duplicate key %q", key)
		}
		seen[key] = true
		v := valueOf(f)
		kid := &node{header: key, start: f.Pos(), end: endPos(v)}

		switch key {
		case "capabilities":
			caps, err := stringList(v)
			if err != nil {
				return PathRules{}, nil, fail(kline, "capabilities must be a list of strings")
			}
			for i, c := range caps {
				bit, ok := capBits[c]
				if !ok {
					return PathRules{}, nil, fail(listElemLine(v, i, kline), "invalid capability %q", c)
				}
				bits |= bit
			}
		case "policy":
			s, err := stringLit(v)
			if err != nil {
				return PathRules{}, nil, fail(kline, "policy must be a string")
			}
			caps, ok := legacyPolicies[s]
			if !ok {
				return PathRules{}, nil, fail(kline, "invalid policy %q", s)
			}
			for _, c := range caps {
				bits |= capBits[c]
			}
		case "comment":
			s, err := stringLit(v)
			if err != nil {
				return PathRules{}, nil, fail(kline, "comment must be a string")
			}
			pr.Comment = s
		case "required_parameters", "mfa_methods":
			list, err := stringList(v)
			if err != nil {
				return PathRules{}, nil, fail(kline, "%s must be a list of strings", key)
			}
			if key == "mfa_methods" {
				pr.MFAMethods = list
				break
			}
			// Parameter names are matched without regard to case.
			for i := range list {
				list[i] = strings.ToLower(list[i])
			}
			pr.RequiredParameters = list
		case "allowed_parameters", "denied_parameters":
			params, kids, err := parameterMap(v, kline)
			if err != nil {
				return PathRules{}, nil, fail(orLine(err.Line, kline), "%s: %s", key, err.Msg)
			}
			if key == "allowed_parameters" {
				pr.AllowedParameters = params
			} else {
				pr.DeniedParameters = params
			}
			kid.object, kid.kids, kid.open = true, kids, objectOpen(v)
		case "min_wrapping_ttl", "max_wrapping_ttl":
			d, err := durationLit(v)
			if err != nil {
				return PathRules{}, nil, fail(kline, "%s: %s", key, toParseError(err).Msg)
			}
			if key == "min_wrapping_ttl" {
				pr.MinWrappingTTL = d
			} else {
				pr.MaxWrappingTTL = d
			}
		case "control_group":
			if _, ok := v.(*ast.ObjectType); !ok {
				return PathRules{}, nil, fail(kline, "control_group must be an object")
			}
			g, err := genericNode(key, f)
			if err != nil {
				return PathRules{}, nil, fail(orLine(err.Line, kline), "control_group: %s", err.Msg)
			}
			kid = g
			pr.ControlGroup = true
		}
		if !kid.object {
			kid.value, err = renderValue(v)
			if err != nil {
				return PathRules{}, nil, fail(kline, "%s: %s", key, toParseError(err).Msg)
			}
		}
		n.kids = append(n.kids, kid)
	}
	if pr.MinWrappingTTL > 0 && pr.MaxWrappingTTL > 0 && pr.MaxWrappingTTL < pr.MinWrappingTTL {
		return PathRules{}, nil, fail(line, "max_wrapping_ttl cannot be less than min_wrapping_ttl")
	}
	// deny discards whatever else the block grants.
	if bits&capBits[CapDeny] != 0 {
		bits = capBits[CapDeny]
	}
	pr.Capabilities = sortedCaps(bits)
	return pr, n, nil
}

// isSegmentWildcard is Vault's test for a pattern that uses "+" as a
// segment; a "+" elsewhere ("a+b") is a literal.
func isSegmentWildcard(pattern string) bool {
	return pattern == "+" || strings.HasPrefix(pattern, "+/") || strings.Contains(pattern, "/+")
}

// parameterMap parses `{ "name" = [values] }`. Names are lower-cased;
// values are kept in their canonical string form.
func parameterMap(v ast.Node, keyLine int) (map[string][]string, []*node, *ParseError) {
	obj, ok := v.(*ast.ObjectType)
	if !ok || obj.List == nil {
		return nil, nil, &ParseError{Line: orLine(nodeLine(v), keyLine), Msg: "must be a map of parameter names to lists of values"}
	}
	params := map[string][]string{}
	var kids []*node
	for _, item := range obj.List.Items {
		written, line, err := firstKey(item)
		if err != nil {
			return nil, nil, toParseError(err)
		}
		name := strings.ToLower(written)
		if _, dup := params[name]; dup {
			return nil, nil, &ParseError{Line: line, Msg: fmt.Sprintf("duplicate parameter %q", name)}
		}
		pv := valueOf(item)
		list, ok := pv.(*ast.ListType)
		if !ok {
			return nil, nil, &ParseError{Line: line, Msg: fmt.Sprintf("parameter %q: values must be a list", name)}
		}
		values := []string{}
		for _, elem := range list.List {
			lit, ok := elem.(*ast.LiteralType)
			if !ok {
				return nil, nil, &ParseError{Line: orLine(nodeLine(elem), line), Msg: fmt.Sprintf("parameter %q: values must be strings, numbers or booleans", name)}
			}
			val, err := literal(lit)
			if err != nil {
				return nil, nil, toParseError(err)
			}
			values = append(values, canonical(val))
		}
		params[name] = values
		rendered, rerr := renderValue(pv)
		if rerr != nil {
			return nil, nil, &ParseError{Line: line, Msg: fmt.Sprintf("parameter %q: %s", name, toParseError(rerr).Msg)}
		}
		kids = append(kids, &node{header: quote(written), value: rendered, start: item.Pos(), end: endPos(pv)})
	}
	return params, kids, nil
}

// genericNode keeps an object whose content lessor does not interpret
// (control_group) so that Format can print it. Lists may hold only
// literals, which is all Vault's own uses of these keys need.
func genericNode(header string, item *ast.ObjectItem) (*node, *ParseError) {
	v := valueOf(item)
	n := &node{header: header, start: item.Pos(), end: endPos(v)}
	obj, ok := v.(*ast.ObjectType)
	if !ok {
		rendered, err := renderValue(v)
		if err != nil {
			return nil, &ParseError{Line: nodeLine(v), Msg: toParseError(err).Msg}
		}
		n.value = rendered
		return n, nil
	}
	n.object, n.open = true, objectOpen(v)
	if obj.List == nil {
		return n, nil
	}
	for _, kid := range obj.List.Items {
		key, _, err := firstKey(kid)
		if err != nil {
			return nil, toParseError(err)
		}
		kn, perr := genericNode(renderKey(key), kid)
		if perr != nil {
			return nil, perr
		}
		n.kids = append(n.kids, kn)
	}
	return n, nil
}

// members returns the items inside item's value, looking past its first
// key: `path "a" { ... }` (two keys), `path = { "a" = { ... } }` and
// JSON's flattened objects are all the same thing. open and end are the
// positions comments inside the value are placed between.
func members(item *ast.ObjectItem) (items []*ast.ObjectItem, open, end token.Pos, ok bool) {
	v := valueOf(item)
	obj, ok := v.(*ast.ObjectType)
	if !ok {
		return nil, token.Pos{}, token.Pos{}, false
	}
	if obj.List == nil {
		return nil, obj.Lbrace, obj.Rbrace, true
	}
	return obj.List.Items, obj.Lbrace, obj.Rbrace, true
}

// valueOf returns what item's first key is bound to: its value, or, for
// a multi-key item (`a "b" { ... }`), an object holding the rest.
func valueOf(item *ast.ObjectItem) ast.Node {
	if len(item.Keys) <= 1 {
		return item.Val
	}
	rest := &ast.ObjectItem{Keys: item.Keys[1:], Assign: item.Assign, Val: item.Val}
	return &ast.ObjectType{
		Lbrace: item.Keys[1].Pos(),
		Rbrace: endPos(item.Val),
		List:   &ast.ObjectList{Items: []*ast.ObjectItem{rest}},
	}
}

// objectOpen is the position after which an object's members start.
func objectOpen(v ast.Node) token.Pos {
	if obj, ok := v.(*ast.ObjectType); ok {
		return obj.Lbrace
	}
	return v.Pos()
}

// endPos is the position of the last token of n.
func endPos(n ast.Node) token.Pos {
	switch v := n.(type) {
	case nil:
		return token.Pos{}
	case *ast.ObjectType:
		return v.Rbrace
	case *ast.ListType:
		return v.Rbrack
	case *ast.LiteralType:
		p := v.Token.Pos
		// A heredoc spans lines; a comment after it is on its last.
		p.Line += strings.Count(v.Token.Text, "\n")
		return p
	}
	return n.Pos()
}

// firstKey returns an item's first key and its line.
func firstKey(item *ast.ObjectItem) (string, int, error) {
	if len(item.Keys) == 0 {
		line := nodeLine(item.Val)
		return "", line, &ParseError{Line: line, Msg: "value without a key"}
	}
	line := item.Keys[0].Pos().Line
	if line == 0 {
		// hcl's JSON parser records no position for keys, only for the
		// ":" after them (after flattening, the outermost one).
		line = item.Assign.Line
	}
	key, err := keyText(item.Keys[0])
	if pe, ok := err.(*ParseError); ok && pe.Line == 0 {
		pe.Line = line
	}
	return key, line, err
}

// toParseError returns err as a *ParseError.
func toParseError(err error) *ParseError {
	var pe *ParseError
	if errors.As(err, &pe) {
		return pe
	}
	return &ParseError{Msg: err.Error()}
}

// keyText returns an object key as a string.
func keyText(k *ast.ObjectKey) (string, error) {
	v, err := tokenValue(k.Token)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", &ParseError{Line: k.Pos().Line, Msg: fmt.Sprintf("invalid key %s", k.Token.Text)}
	}
	return s, nil
}

// tokenValue decodes a token. hcl's Token.Value panics on text it cannot
// decode (an unbalanced "${" in a JSON string, an integer that overflows).
func tokenValue(t token.Token) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, &ParseError{Line: t.Pos.Line, Msg: fmt.Sprintf("invalid value %s", t.Text)}
		}
	}()
	return t.Value(), nil
}

// literal returns the Go value of a string, number or boolean.
func literal(lit *ast.LiteralType) (any, error) {
	switch lit.Token.Type {
	case token.STRING, token.HEREDOC, token.NUMBER, token.FLOAT, token.BOOL:
		return tokenValue(lit.Token)
	}
	return nil, &ParseError{Line: lit.Pos().Line, Msg: fmt.Sprintf("invalid value %s", lit.Token.Text)}
}

func stringLit(v ast.Node) (string, error) {
	lit, ok := v.(*ast.LiteralType)
	if !ok {
		return "", errors.New("not a string")
	}
	val, err := literal(lit)
	if err != nil {
		return "", err
	}
	s, ok := val.(string)
	if !ok {
		return "", errors.New("not a string")
	}
	return s, nil
}

func stringList(v ast.Node) ([]string, error) {
	list, ok := v.(*ast.ListType)
	if !ok {
		return nil, errors.New("not a list")
	}
	out := []string{}
	for _, elem := range list.List {
		s, err := stringLit(elem)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// nodeLine is the line n starts on, 0 when unknown.
func nodeLine(n ast.Node) int {
	if n == nil {
		return 0
	}
	return n.Pos().Line
}

// orLine returns line, or def when line is unknown (0), as it is for
// most tokens of JSON input.
func orLine(line, def int) int {
	if line > 0 {
		return line
	}
	return def
}

// listElemLine is the line of the i-th element of a list, or def.
func listElemLine(v ast.Node, i, def int) int {
	if list, ok := v.(*ast.ListType); ok && i < len(list.List) {
		return orLine(nodeLine(list.List[i]), def)
	}
	return def
}

// durationLit reads a TTL given as seconds (a number or a string of
// digits) or as a Go duration string ("1h30m").
func durationLit(v ast.Node) (time.Duration, error) {
	lit, ok := v.(*ast.LiteralType)
	if !ok {
		return 0, errors.New("must be a duration")
	}
	val, err := literal(lit)
	if err != nil {
		return 0, err
	}
	var d time.Duration
	switch x := val.(type) {
	case int64:
		d = time.Duration(x) * time.Second
		if x > int64(1<<62)/int64(time.Second) {
			return 0, fmt.Errorf("duration %d out of range", x)
		}
	case string:
		if n, err := strconv.ParseInt(x, 10, 64); err == nil {
			if n > int64(1<<62)/int64(time.Second) {
				return 0, fmt.Errorf("duration %q out of range", x)
			}
			d = time.Duration(n) * time.Second
		} else if d, err = time.ParseDuration(x); err != nil {
			return 0, fmt.Errorf("invalid duration %q", x)
		}
	default:
		return 0, errors.New("must be a duration")
	}
	if d < 0 {
		return 0, errors.New("must not be negative")
	}
	return d, nil
}

// canonical is the string form a parameter value is compared in.
func canonical(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return floatText(x)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

// renderValue prints a literal or a list of literals in canonical HCL.
func renderValue(v ast.Node) (string, error) {
	switch x := v.(type) {
	case *ast.LiteralType:
		val, err := literal(x)
		if err != nil {
			return "", err
		}
		if s, ok := val.(string); ok {
			return quote(s), nil
		}
		return canonical(val), nil
	case *ast.ListType:
		parts := make([]string, 0, len(x.List))
		for _, elem := range x.List {
			lit, ok := elem.(*ast.LiteralType)
			if !ok {
				return "", errors.New("lists may hold only strings, numbers and booleans")
			}
			s, err := renderValue(lit)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	}
	return "", errors.New("expected a string, number, boolean or list")
}

// renderKey prints an object key bare when it is an identifier.
func renderKey(k string) string {
	if k == "" {
		return quote(k)
	}
	for i, r := range k {
		letter := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !letter && (i == 0 || !(r == '-' || (r >= '0' && r <= '9'))) {
			return quote(k)
		}
	}
	if k == "true" || k == "false" {
		return quote(k)
	}
	return k
}

// quote writes s as an HCL string literal. hcl v1 copies the inside of
// "${...}" verbatim when it reads a string, so those runs are written
// verbatim too; everything else is escaped as in Go.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for len(s) > 0 {
		if strings.HasPrefix(s, "${") {
			depth, i := 1, 2
			for i < len(s) && depth > 0 {
				switch s[i] {
				case '{':
					depth++
				case '}':
					depth--
				}
				i++
			}
			b.WriteString(s[:i])
			s = s[i:]
			continue
		}
		next := strings.Index(s, "${")
		if next < 0 {
			next = len(s)
		}
		q := strconv.Quote(s[:next])
		b.WriteString(q[1 : len(q)-1])
		s = s[next:]
	}
	b.WriteByte('"')
	return b.String()
}

// flattenComments lists every comment in source order.
func flattenComments(groups []*ast.CommentGroup) []*ast.Comment {
	var out []*ast.Comment
	for _, g := range groups {
		for _, c := range g.List {
			if !strings.HasPrefix(c.Text, "/*") {
				// A line comment ends at "\n"; a "\r" before it (a lone
				// CR at the end of input) is not part of what it says.
				c = &ast.Comment{Start: c.Start, Text: strings.TrimRight(c.Text, " \t\r")}
			}
			out = append(out, c)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}
