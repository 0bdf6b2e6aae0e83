package logical

import (
	"errors"
	"testing"
)

func TestPathSpecMatch(t *testing.T) {
	specs := []PathSpec{
		{Pattern: "roles/"},
		{Pattern: "roles/:name"},
		{Pattern: "lookup/"},
		{Pattern: "lookup"},
		{Pattern: "mounts/*path/tune"},
		{Pattern: "mounts/*path"},
	}
	for rel, want := range map[string]string{
		"roles":          "roles/",
		"roles/":         "roles/",
		"roles/a":        "roles/:name",
		"lookup":         "lookup",
		"mounts/a/tune":  "mounts/*path/tune",
		"mounts/a/b":     "mounts/*path",
		"mounts/a/b/c":   "mounts/*path",
		"roles/a/b":      "",
		"other":          "",
		"mounts":         "",
		"mounts/a/b/tun": "mounts/*path",
	} {
		s, ok := FindPathSpec(specs, rel)
		if (want == "") == ok || s.Pattern != want {
			t.Errorf("FindPathSpec(%q) = %q, %v; want %q", rel, s.Pattern, ok, want)
		}
	}
	for pattern, want := range map[string]string{"roles/": "roles/", "creds/:name": "creds/", "mounts/*path/tune": "mounts/", "remount": "remount"} {
		if got := (PathSpec{Pattern: pattern}).Fixed(); got != want {
			t.Errorf("Fixed(%q) = %q, want %q", pattern, got, want)
		}
	}
}

type describer struct{ Backend }

func (describer) PathSpecs() []PathSpec {
	return []PathSpec{{Pattern: "creds/:name", Description: "issue", Operations: map[Operation]FieldSchema{
		ReadOperation:   nil,
		UpdateOperation: {"ttl": {Type: TypeDurationSecond, Description: "the TTL"}},
		CreateOperation: {"ttl": {Type: TypeDurationSecond, Description: "the TTL"}},
	}}}
}

func TestHelp(t *testing.T) {
	resp, err := Help(describer{}, &Request{MountPoint: "database/", Path: "creds/ro"})
	if err != nil {
		t.Fatal(err)
	}
	d := resp.Data
	if d["path"] != "database/creds/ro" || d["pattern"] != "database/creds/:name" || d["description"] != "issue" {
		t.Errorf("help data: %v", d)
	}
	if ops := StringList(d["operations"]); len(ops) != 3 || ops[0] != "create" || ops[2] != "update" {
		t.Errorf("operations: %v", ops)
	}
	ttl := d["fields"].(map[string]any)["ttl"].(map[string]any)
	if ttl["type"] != "duration" || ttl["description"] != "the TTL" || len(StringList(ttl["operations"])) != 2 {
		t.Errorf("ttl field: %v", ttl)
	}
	_, err = Help(describer{}, &Request{MountPoint: "database/", Path: "nosuch/x"})
	if !errors.Is(err, ErrUnsupportedPath) || err.Error() != `unsupported path "database/nosuch/x"` {
		t.Errorf("unknown path: %v", err)
	}
}
