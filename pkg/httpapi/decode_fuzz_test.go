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
// has, whose data is what a JSON object or a form can hold, within the
// bounds of depth and count, and whose path the core either refuses or
// makes canonical without a "." or ".." segment, an empty segment or a
// control character. When the token check before the body refuses
// (deny), not one byte of the body is read.
func FuzzDecodeRequest(f *testing.F) {
	f.Add("GET", "/v1/database/creds/readonly", "", "", []byte(nil), false)
	f.Add("GET", "/v1/database/roles", "list=true", "", []byte(nil), false)
	f.Add("LIST", "/v1/sys/policy", "", "", []byte(nil), false)
	f.Add("PUT", "/v1/database/roles/r", "", "application/json", []byte(`{"db_name":"pg","default_ttl":3600,"x":[1,{"y":null}]}`), false)
	f.Add("POST", "/v1/sys/leases/renew", "", "", []byte(`{"lease_id":"database/creds/r/abc","increment":60}`), false)
	f.Add("POST", "/v1/auth/token/create", "", "application/x-www-form-urlencoded", []byte("policies=a&policies=b"), false)
	f.Add("DELETE", "/v1/database/roles/r", "a=1&a=2&help=0", "", []byte(nil), false)
	f.Add("PUT", "/v1/sys/%2e%2e/x", "", "", []byte(`[1]`), false)
	f.Add("PUT", "/v1/a//b/", "", "", []byte(`{"a":1} {"b":2}`), false)
	f.Add("GET", "/v1/a/./b", "help=1", "", []byte(nil), false)
	f.Add("PATCH", "/v1/x", "%zz", "", []byte(`null`), false)
	deep := strings.Repeat("[", maxDataDepth-1) + strings.Repeat("]", maxDataDepth-1)
	f.Add("PUT", "/v1/sys/policy/x", "", "", []byte(`{"a":`+deep+`}`), false)
	f.Add("PUT", "/v1/sys/policy/x", "", "", []byte(`{"a":[`+deep+`]}`), false)
	f.Add("PUT", "/v1/sys/policy/x", "", "", []byte(`{"a":"\"[[[[{{{{","b":"\\"}`), false)
	f.Add("PUT", "/v1/sys/policy/x", "", "", []byte(`{"a":[`+strings.Repeat("{},", maxDataValues)+`{}]}`), false)
	f.Add("POST", "/v1/auth/token/create", "", "application/x-www-form-urlencoded", []byte(strings.Repeat("a=1&", maxDataValues)), false)
	f.Add("GET", "/v1/database/roles", strings.Repeat("&", maxDataValues), "", []byte(nil), false)
	f.Add("DELETE", "/v1/database/roles/r", strings.TrimSuffix(strings.Repeat("a=1&", maxDataValues), "&"), "", []byte(nil), false)
	f.Add("PUT", "/v1/sys/policy/x", "", "", []byte(`{"policy":`), true)
	f.Add("PUT", "/v1/sys/policy/", "", "", []byte(`{}`), true)
	f.Add("PUT", "/v1/sys/policy/x", "", "", []byte(nil), true)
	f.Add("PUT", "/v1/sys/policy/x", "help=1", "", []byte(`{}`), true)
	f.Fuzz(func(t *testing.T, method, path, query, contentType string, body []byte, deny bool) {
		if !validMethod(method) {
			return // net/http refuses such a request line before any handler
		}
		counted := &countingReader{r: bytes.NewReader(body)}
		r := &http.Request{
			Method: method,
			URL:    &url.URL{Path: path, RawQuery: query},
			Header: http.Header{},
			Body:   io.NopCloser(counted),
		}
		r.ContentLength = int64(len(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		var beforeBody func(*logical.Request) error
		if deny {
			beforeBody = func(*logical.Request) error {
				return &httpError{status: http.StatusForbidden, msg: "permission denied"}
			}
		}
		req, err := decodeRequest(httptest.NewRecorder(), r, 1<<16, beforeBody)
		if read := counted.n; deny && read > 0 {
			t.Fatalf("%d bytes of the body read, though the token check refused", read)
		}
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
		if deny && req.Operation == logical.UpdateOperation && len(body) > 0 {
			t.Fatalf("a write with a body decoded, though the token check refused")
		}
		values := 0
		checkTree(t, req.Data, 1, &values)
		if req.Operation != logical.UpdateOperation {
			// A query string's repeated key is a list: its values count
			// once each, as parameters, and the key not again.
			values = 0
			for _, v := range req.Data {
				if l, ok := v.([]any); ok {
					values += len(l)
				} else {
					values++
				}
			}
		}
		if values > maxDataValues {
			t.Fatalf("request data holds %d values", values)
		}
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

// checkTree fails unless v, at depth, holds only what JSON decodes to
// (with json.Number) or a form gives, nested at most maxDataDepth deep;
// it adds the values below v to *values.
func checkTree(t *testing.T, v any, depth int, values *int) {
	switch x := v.(type) {
	case nil, string, bool:
	case map[string]any:
		if depth > maxDataDepth {
			t.Fatalf("request data nested %d deep", depth)
		}
		*values += len(x)
		for _, e := range x {
			checkTree(t, e, depth+1, values)
		}
	case []any:
		if depth > maxDataDepth {
			t.Fatalf("request data nested %d deep", depth)
		}
		*values += len(x)
		for _, e := range x {
			checkTree(t, e, depth+1, values)
		}
	default:
		if _, ok := v.(interface{ Int64() (int64, error) }); !ok {
			t.Fatalf("value of type %T in request data", v)
		}
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
