package policy

import _ "embed"

// DefaultPolicy is the text of lessor's built-in default policy: the paths
// of Vault's default policy that exist in lessor. It is kept as a
// commented HCL file, in canonical form (Format returns it unchanged, a
// test checks), so that `lessor policy read default` shows something
// worth reading.
//
//go:embed default.hcl
var DefaultPolicy string
