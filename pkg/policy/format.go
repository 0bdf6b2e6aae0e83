package policy

import (
	"errors"
	"strings"

	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/token"
)

// ErrFormatChangesMeaning is returned by Format in the rare case where the
// canonical form would not parse back to the same policy (a string that
// hcl v1 cannot quote faithfully, such as one with an unbalanced "${").
var ErrFormatChangesMeaning = errors.New("format policy: the canonical form would change the policy")

// Format returns text in lessor's canonical HCL form, for `policy fmt`:
// items in the order written, two-space indentation, a blank line between
// top-level blocks, `key = value` inside blocks, lists on one line,
// parameter maps as quoted keys, and every comment kept near the item it
// was written by. JSON input comes out as HCL. Invalid input is an error
// (a *ParseError), and the result is checked to parse back to the same
// policy before it is returned.
func Format(text string) (string, error) {
	_, d, err := parse(text)
	if err != nil {
		return "", err
	}
	out := d.print(true)
	_, again, err := parse(out)
	if err != nil || again.print(false) != d.print(false) {
		return "", ErrFormatChangesMeaning
	}
	return out, nil
}

// printer writes a doc. It tracks the source line it last accounted for
// so that a blank line the author left between items survives, and the
// next comment not yet printed.
type printer struct {
	b        strings.Builder
	comments []*ast.Comment
	next     int
	// gaps keeps the author's blank lines inside blocks.
	gaps     bool
	lastLine int
	// opened is true right after a "{" line, where no blank line goes;
	// afterNode is true when the last thing printed was an item (not a
	// comment), which at the top level is always followed by a blank line.
	opened    bool
	afterNode bool
}

// print renders d. Without layout it leaves out comments and the
// author's blank lines: the form Format compares to check that it kept
// the policy's meaning.
func (d *doc) print(layout bool) string {
	p := &printer{gaps: layout && !d.json}
	if layout {
		p.comments = d.comments
	}
	for i, n := range d.nodes {
		p.node(n, 0, startOrEnd(d.nodes, i+1))
	}
	// Comments after the last item.
	p.flushBefore(endOfFile, 0)
	return p.b.String()
}

// endOfFile is a position after every other.
var endOfFile = token.Pos{Line: int(^uint(0) >> 1), Offset: int(^uint(0) >> 1)}

// startOrEnd returns where nodes[i] starts, or endOfFile past the end.
func startOrEnd(nodes []*node, i int) token.Pos {
	if i < len(nodes) {
		return nodes[i].start
	}
	return endOfFile
}

// node prints n. limit is where whatever follows n starts (its next
// sibling, or its parent's "}"): a comment on n's last line before limit
// is n's trailing comment.
func (p *printer) node(n *node, depth int, limit token.Pos) {
	if n.object {
		// Comments before the opening brace belong above the item.
		p.flushBefore(n.open, depth)
	} else {
		// A leaf is printed on one line, so any comment written inside
		// it (in a list spread over lines) moves above it.
		p.flushBefore(n.end, depth)
	}
	p.separate(n.start.Line, depth)
	indent := strings.Repeat("  ", depth)
	switch {
	case !n.object:
		p.b.WriteString(indent + n.header + " = " + n.value)
		p.endLine(n.end, limit)
	case len(n.kids) == 0 && !p.commentBefore(n.end):
		if n.block {
			p.b.WriteString(indent + n.header + " {}")
		} else {
			p.b.WriteString(indent + n.header + " = {}")
		}
		p.endLine(n.end, limit)
	default:
		if n.block {
			p.b.WriteString(indent + n.header + " {")
		} else {
			p.b.WriteString(indent + n.header + " = {")
		}
		p.endLine(n.open, startOrEnd(n.kids, 0))
		p.opened = true
		for i, kid := range n.kids {
			next := n.end
			if i+1 < len(n.kids) {
				next = n.kids[i+1].start
			}
			p.node(kid, depth+1, next)
		}
		p.flushBefore(n.end, depth+1)
		p.b.WriteString(indent + "}")
		p.endLine(n.end, limit)
	}
	p.afterNode = true
	p.opened = false
}

// separate writes the blank line that goes before an item or comment
// starting on source line line.
func (p *printer) separate(line, depth int) {
	if p.b.Len() == 0 || p.opened {
		return
	}
	gap := p.gaps && line > p.lastLine+1
	if gap || (depth == 0 && p.afterNode) {
		p.b.WriteByte('\n')
	}
}

// endLine finishes the current output line, appending the comments
// written on source line pos.Line after pos and before limit.
func (p *printer) endLine(pos, limit token.Pos) {
	for p.next < len(p.comments) && p.comments[p.next].Start.Line == pos.Line &&
		!p.comments[p.next].Start.Before(pos) && p.comments[p.next].Start.Before(limit) {
		p.b.WriteString(" " + p.comments[p.next].Text)
		p.account(p.comments[p.next])
		p.next++
	}
	p.b.WriteByte('\n')
	if pos.Line > p.lastLine {
		p.lastLine = pos.Line
	}
}

// commentBefore reports whether a comment not yet printed comes before pos.
func (p *printer) commentBefore(pos token.Pos) bool {
	return p.next < len(p.comments) && p.comments[p.next].Start.Before(pos)
}

// flushBefore prints, each on its own line, the comments before pos.
func (p *printer) flushBefore(pos token.Pos, depth int) {
	for p.commentBefore(pos) {
		c := p.comments[p.next]
		p.separate(c.Start.Line, depth)
		p.b.WriteString(strings.Repeat("  ", depth) + c.Text + "\n")
		p.account(c)
		p.next++
		p.opened = false
		p.afterNode = false
	}
}

// account records the source lines a printed comment covered.
func (p *printer) account(c *ast.Comment) {
	if end := c.Start.Line + strings.Count(c.Text, "\n"); end > p.lastLine {
		p.lastLine = end
	}
}
