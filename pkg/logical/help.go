package logical

import (
	"sort"
	"strings"
)

// HelpOperation asks what a path does instead of doing it (Vault's
// path-help). The core answers it from the backend's PathSpecs, after the
// same token, mount and ACL checks as any request to the path.
const HelpOperation Operation = "help"

// PathSpec declares one path pattern a backend serves: the operations it
// accepts and the fields each one reads. It is the one declaration that
// path-help prints and shell completion walks.
type PathSpec struct {
	// Pattern is the path below the mount. A segment ":name" stands for
	// any one name, a last segment "*path" the rest of the path (one
	// segment or more); a trailing "/" marks a directory that can be
	// listed.
	Pattern     string
	Description string
	// Operations maps each operation the path accepts to the fields it
	// reads (nil: none).
	Operations map[Operation]FieldSchema
	// NamesFrom is, for a pattern ending in ":name", the directory below
	// the mount whose listing gives the names (creds/:name from roles/).
	NamesFrom string
}

// PathDescriber is a backend that declares its paths.
type PathDescriber interface {
	PathSpecs() []PathSpec
}

// Match reports whether rel (a path below the mount) is an instance of the
// pattern.
func (p PathSpec) Match(rel string) bool {
	if p.Pattern == rel {
		return true
	}
	want, got := strings.Split(p.Pattern, "/"), strings.Split(rel, "/")
	if n := len(want); n <= len(got) && strings.HasPrefix(want[n-1], "*") {
		got = append(got[:n-1:n-1], strings.Join(got[n-1:], "/"))
	}
	if len(want) != len(got) {
		return false
	}
	for i, w := range want {
		if w == got[i] || (strings.ContainsAny(w[:min(1, len(w))], ":*") && got[i] != "") {
			continue
		}
		return false
	}
	return true
}

// Fixed returns the part of the pattern before its first ":name" segment:
// what completion can offer without listing anything.
func (p PathSpec) Fixed() string {
	if i := strings.IndexAny(p.Pattern, ":*"); i >= 0 {
		return p.Pattern[:i]
	}
	return p.Pattern
}

// FindPathSpec returns the spec whose pattern rel matches. A path that
// matches a pattern exactly, or names a listed directory without its
// trailing "/", beats one that matches a ":name" segment.
func FindPathSpec(specs []PathSpec, rel string) (PathSpec, bool) {
	for _, want := range []string{rel, rel + "/"} {
		for _, s := range specs {
			if s.Pattern == want {
				return s, true
			}
		}
	}
	for _, s := range specs {
		if s.Match(rel) {
			return s, true
		}
	}
	return PathSpec{}, false
}

// Help answers a help request from the backend's declared paths, or with
// UnsupportedPath when the backend declares none that matches. The
// response data: description, operations (sorted), and fields by name,
// each with its type, description and the operations that read it.
func Help(be Backend, req *Request) (*Response, error) {
	d, ok := be.(PathDescriber)
	if !ok {
		return nil, UnsupportedPath(req)
	}
	spec, ok := FindPathSpec(d.PathSpecs(), req.Path)
	if !ok {
		return nil, UnsupportedPath(req)
	}
	ops := make([]string, 0, len(spec.Operations))
	fields := map[string]any{}
	for op, schema := range spec.Operations {
		ops = append(ops, string(op))
		for name, f := range schema {
			e, _ := fields[name].(map[string]any)
			if e == nil {
				e = map[string]any{"type": f.Type.String(), "description": f.Description, "operations": []string{}}
				fields[name] = e
			}
			e["operations"] = append(e["operations"].([]string), string(op))
		}
	}
	sort.Strings(ops)
	for _, v := range fields {
		sort.Strings(v.(map[string]any)["operations"].([]string))
	}
	return &Response{Data: map[string]any{
		"path":        req.MountPoint + req.Path,
		"pattern":     req.MountPoint + spec.Pattern,
		"description": spec.Description,
		"operations":  ops,
		"fields":      fields,
	}}, nil
}
