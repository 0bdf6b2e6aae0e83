package audit

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestHashString(t *testing.T) {
	// HMAC-SHA256 test case 2 of RFC 4231.
	got := HashString([]byte("Jefe"), "what do ya want for nothing?")
	want := "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if HashString([]byte("other key"), "what do ya want for nothing?") == got {
		t.Error("the hash does not depend on the key")
	}
}

func TestHasInlinePassword(t *testing.T) {
	cases := map[string]bool{
		"postgresql://root:pw@localhost:5432/postgres":                   true,
		"postgres://root:p@ss@localhost/postgres":                        true, // unescaped @ in the password
		"postgres://root:@localhost/postgres":                            true, // empty password: still hashed, harmless
		"root:pw@localhost/postgres":                                     true,
		"postgres://root@localhost/postgres?password=pw":                 true,
		"postgres://root@localhost/postgres?sslmode=disable&PASSWORD=pw": true,
		"postgres://root@localhost/postgres?sslpassword=keypw":           true,
		"host=localhost user=root password=pw dbname=postgres":           true,
		"host=localhost password = 'p w' user=root":                      true,
		"host=h user=root password='SECRETPW2 dbname=postgres":           true, // quote never closed
		"postgresql://{{username}}:{{password}}@localhost:5432/postgres": false,
		"host=localhost user={{username}} password={{password}}":         false,
		"postgres://root@localhost:5432/postgres?sslmode=disable":        false,
		"postgres://localhost:5432/postgres":                             false,
		"host=localhost user=root dbname=postgres":                       false,
		"host=localhost password= user=root":                             true, // libpq reads the password "user=root"
		"host=localhost password=":                                       false,
		"postgres://host:5432/db?application_name=a@b":                   true, // conservative: looks like userinfo
		"":                        false,
		"v-token-readonly-Xy12":   false,
		"password_authentication": false,
		"postgresql://{{username}}:{{password}}@db/x?password=leaked-here": true,
		// Parameter names are percent-decoded by the driver.
		"postgresql://{{username}}:{{password}}@db/x?pass%77ord=leaked-here":          true,
		"postgresql://{{username}}:{{password}}@db/x?%70assword=leaked-here":          true,
		"postgresql://{{username}}:{{password}}@db/x?ssl%50ASSWORD=key-pw":            true,
		"postgresql://{{username}}:{{password}}@db/x?pass%77ord=%7B%7Bpassword%7D%7D": false,
		"postgresql://{{username}}:{{password}}@db/x?application_name=100%25":         false,
		"postgresql://{{username}}:{{password}}@db/x?application_name=%zz":            false,
	}
	for in, want := range cases {
		if got := hasInlinePassword(in); got != want {
			t.Errorf("hasInlinePassword(%q) = %v, want %v", in, got, want)
		}
	}
}

// redactJSON redacts a JSON document as the broker does for path.
func redactJSON(t *testing.T, path, doc string) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	r := newRedactor(testKey, path, false)
	tree, err := r.tree(v)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(tree); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(out.String(), "\n")
}

func TestRedaction(t *testing.T) {
	h := func(s string) string { return fmt.Sprintf("%q", HashString(testKey, s)) }
	cases := []struct {
		path, in, want string
	}{
		// Secret keys, in any case, at any depth.
		{"x", `{"password":"a","Password":"b","new_password":"c","token":"d","client_token":"e","private_key":"f","unseal_key":"g","passphrase":"h"}`,
			`{"Password":` + h("b") + `,"client_token":` + h("e") + `,"new_password":` + h("c") + `,"passphrase":` + h("h") + `,"password":` + h("a") + `,"private_key":` + h("f") + `,"token":` + h("d") + `,"unseal_key":` + h("g") + `}`},
		{"x", `{"root_token":"a","DB_PASSWORD":"b","wrapping_token":"c"}`,
			`{"DB_PASSWORD":` + h("b") + `,"root_token":` + h("a") + `,"wrapping_token":` + h("c") + `}`},
		// Everything under a secret key, whatever its type; null stays null.
		{"x", `{"unseal_keys":["k1","k2"],"password":{"a":1,"b":true,"c":null}}`,
			`{"password":{"a":` + h("1") + `,"b":` + h("true") + `,"c":null},"unseal_keys":[` + h("k1") + `,` + h("k2") + `]}`},
		{"x", `{"a":[{"b":{"root_password":"deep"}}]}`,
			`{"a":[{"b":{"root_password":` + h("deep") + `}}]}`},
		// Look-alikes stay clear.
		{"x", `{"password_authentication":"scram-sha-256","password_policy":"p","token_ttl":"1h","token_policies":["a"],"tokens":3,"username":"v-x","lease_id":"database/creds/r/abc","accessor":"acc","id":"database/creds/r/abc","policies":["apps"]}`,
			`{"accessor":"acc","id":"database/creds/r/abc","lease_id":"database/creds/r/abc","password_authentication":"scram-sha-256","password_policy":"p","policies":["apps"],"token_policies":["a"],"token_ttl":"1h","tokens":3,"username":"v-x"}`},
		// Under auth/token/, "id" is a token.
		{"auth/token/lookup", `{"id":"lsr.abc","accessor":"acc"}`,
			`{"accessor":"acc","id":` + h("lsr.abc") + `}`},
		{"sys/leases/lookup", `{"id":"database/creds/r/abc"}`, `{"id":"database/creds/r/abc"}`},
		{"sys/audit-hash/file/", `{"input":"pw","format":"json"}`,
			`{"format":"json","input":` + h("pw") + `}`},
		{"sys/audit-hash", `{"input":"pw"}`, `{"input":` + h("pw") + `}`},
		{"sys/audit/file/", `{"input":"x"}`, `{"input":"x"}`},
		// Connection strings: hashed whole only with an inline password.
		{"x", `{"connection_url":"postgresql://{{username}}:{{password}}@db:5432/postgres","admin_url":"postgres://u:pw@db/x","dsn":"host=db password=pw","other_url":"https://example.com/a?b=c&d=e"}`,
			`{"admin_url":` + h("postgres://u:pw@db/x") + `,"connection_url":"postgresql://{{username}}:{{password}}@db:5432/postgres","dsn":` + h("host=db password=pw") + `,"other_url":"https://example.com/a?b=c&d=e"}`},
		// A URL with a password under a key nobody listed is hashed too;
		// a keyword string there is not (it could be anything).
		{"x", `{"note":"postgres://u:pw@db/x","statement":"host=db password=pw"}`,
			`{"note":` + h("postgres://u:pw@db/x") + `,"statement":"host=db password=pw"}`},
		// Numbers keep their exact text.
		{"x", `{"big":12345678901234567890,"f":1.50}`, `{"big":12345678901234567890,"f":1.50}`},
	}
	for _, tc := range cases {
		if got := redactJSON(t, tc.path, tc.in); got != tc.want {
			t.Errorf("%s %s:\n got %s\nwant %s", tc.path, tc.in, got, tc.want)
		}
	}
}

func TestRedactionOfGoTypes(t *testing.T) {
	type conn struct {
		URL      string `json:"connection_url"`
		Password string `json:"password"`
	}
	r := &redactor{key: testKey}
	v := map[string]any{
		"details": conn{URL: "postgres://a:b@h/d", Password: "pw"},
		"meta":    map[string]string{"api_token": "t"},
		"raw":     []byte("x"),
	}
	tree, err := r.tree(v)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(tree)
	want := `{"details":{"connection_url":"` + HashString(testKey, "postgres://a:b@h/d") + `","password":"` + HashString(testKey, "pw") + `"},` +
		`"meta":{"api_token":"` + HashString(testKey, "t") + `"},"raw":"eA=="}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if v["details"].(conn).Password != "pw" || v["meta"].(map[string]string)["api_token"] != "t" {
		t.Error("caller's values changed")
	}
}

func FuzzSecretsAlwaysHashed(f *testing.F) {
	f.Add("Secr3t-pw", "user", "postgres://u:pw@h/d")
	f.Add("", "", "host=h password='a b'")
	f.Fuzz(func(t *testing.T, pw, user, url string) {
		r := &redactor{key: testKey}
		tree, err := r.tree(map[string]any{
			"username":       user,
			"password":       pw,
			"nested":         []any{map[string]any{"X_PASSWORD": pw}},
			"connection_url": url,
		})
		if err != nil {
			t.Fatal(err)
		}
		m := tree.(map[string]any)
		want := func(s string) string { return HashString(testKey, viaJSON(s)) }
		if m["password"] != want(pw) {
			t.Errorf("password %q became %v", pw, m["password"])
		}
		if got := m["nested"].([]any)[0].(map[string]any)["X_PASSWORD"]; got != want(pw) {
			t.Errorf("nested password %q became %v", pw, got)
		}
		if m["username"] != viaJSON(user) {
			t.Errorf("username %q became %v", user, m["username"])
		}
		if hasInlinePassword(url) && m["connection_url"] != want(url) {
			t.Errorf("connection_url %q became %v", url, m["connection_url"])
		}
	})
}

// viaJSON returns s as JSON carries it: invalid UTF-8 becomes U+FFFD.
func viaJSON(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}
