package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/lessorhq/lessor/pkg/logical"
)

// FuzzDecodeRequest: whatever the method, path, query, content type and
// body, the decoder never panics; it either refuses with a 4xx and a
// one-line message, or returns a request whose operation is one lessor
// has, whose data is what a JSON object or a form can hold, and whose
// path the core either refuses or makes canonical without a "." or ".."
// segment, an empty segment or a control character.
func FuzzDecodeRequest(f *testing.F) {
	f.Add("GET", "/v1/database/creds/readonly", "", "", []byte(nil))
	f.Add("GET", "/v1/database/roles", "list=true", "", []byte(nil))
	f.Add("LIST", "/v1/sys/policy", "", "", []byte(nil))
	f.Add("PUT", "/v1/database/roles/r", "", "application/json", []byte(`{"db_name":"pg","default_ttl":3600,"x":[1,{"y":null}]}`))
	f.Add("POST", "/v1/sys/leases/renew", "", "", []byte(`{"lease_id":"database/creds/r/abc","increment":60}`))
	f.Add("POST", "/v1/auth/token/create", "", "application/x-www-form-urlencoded", []byte("policies=a&policies=b"))
	f.Add("DELETE", "/v1/database/roles/r", "a=1&a=2&help=0", "", []byte(nil))
	f.Add("PUT", "/v1/sys/%2e%2e/x", "", "", []byte(`[1]`))
	f.Add("PUT", "/v1/a//b/", "", "", []byte(`{"a":1} {"b":2}`))
	f.Add("GET", "/v1/a/./b", "help=1", "", []byte(nil))
	f.Add("PATCH", "/v1/x", "%zz", "", []byte(`null`))
	f.Fuzz(func(t *testing.T, method, path, query, contentType string, body []byte) {
		if !validMethod(method) {
			return // net/http refuses such a request line before any handler
		}
		r := &http.Request{
			Method: method,
			URL:    &url.URL{Path: path, RawQuery: query},
			Header: http.Header{},
			Body:   io.NopCloser(bytes.NewReader(body)),
		}
		r.ContentLength = int64(len(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		req, err := decodeRequest(httptest.NewRecorder(), r, 1<<16)
		if err != nil {
			var he *httpError
			if !errors.As(err, &he) || he.status < 400 || he.status > 499 {
				t.Fatalf("error %v is not a 4xx httpError", err)
			}
			if he.msg == "" || strings.ContainsAny(oneLine(he.msg), "\r\n") {
				t.Fatalf("error message %q", he.msg)
			}
			return
		}
		switch req.Operation {
		case logical.ReadOperation, logical.ListOperation, logical.UpdateOperation, logical.DeleteOperation, logical.HelpOperation:
		default:
			t.Fatalf("operation %q", req.Operation)
		}
		if req.Operation == logical.ListOperation && !strings.HasSuffix(req.Path, "/") {
			t.Fatalf("list of %q without its trailing slash", req.Path)
		}
		if req.Operation == logical.UpdateOperation && strings.HasSuffix(req.Path, "/") {
			t.Fatalf("write to %q ending in a slash", req.Path)
		}
		checkTree(t, req.Data)
		p, err := logical.CanonicalPath(req.Path, req.Operation == logical.ListOperation)
		if err != nil {
			return
		}
		for _, seg := range strings.Split(strings.TrimSuffix(p, "/"), "/") {
			if p != "" && (seg == "" || seg == "." || seg == "..") {
				t.Fatalf("canonical path %q has segment %q", p, seg)
			}
		}
		if strings.ContainsAny(p, "\x00\r\n") {
			t.Fatalf("canonical path %q has a control character", p)
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?={}`, c) {
			return false
		}
	}
	return true
}

// checkTree fails unless v holds only what JSON decodes to (with
// json.Number) or a form gives.
func checkTree(t *testing.T, v any) {
	switch x := v.(type) {
	case nil, string, bool:
	case map[string]any:
		for _, e := range x {
			checkTree(t, e)
		}
	case []any:
		for _, e := range x {
			checkTree(t, e)
		}
	default:
		if _, ok := v.(interface{ Int64() (int64, error) }); !ok {
			t.Fatalf("value of type %T in request data", v)
		}
	}
}
