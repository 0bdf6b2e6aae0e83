package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode"

	"github.com/lessorhq/lessor/pkg/logical"
)

// methodList is Vault's LIST method.
const methodList = "LIST"

// Bounds on the shape of a request's data, which its size alone does not
// bound: a body of a few megabytes of "[{},{},…]" would decode to millions
// of maps. Lessor's paths take flat objects of a few fields (a list, a map
// of metadata at most), so these are far above what a real client sends
// and far below what costs the server.
const (
	// maxDataDepth is how deep arrays and objects may nest in a JSON
	// body, the top-level object being the first level.
	maxDataDepth = 32
	// maxDataValues bounds the values a body or query string holds: the
	// elements of every array and the members of every object of a JSON
	// body, all levels together; the parameters of a form or query
	// string.
	maxDataValues = 10000
)

// decodeRequest turns an HTTP request for /v1/<path> into the logical
// request the core runs. It decides the operation, the token and the
// data; the core makes the path canonical (or refuses it) before the ACL
// sees it. Before it reads a body it calls beforeBody (when not nil) with
// the request decided so far, without data, and reads nothing if that
// refuses: a server passes a token check there. Its errors are
// *httpError, with a 4xx status, or beforeBody's.
func decodeRequest(w http.ResponseWriter, r *http.Request, maxBody int64, beforeBody func(*logical.Request) error) (*logical.Request, error) {
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		return nil, &httpError{status: http.StatusNotFound, msg: "not found"}
	}
	if strings.IndexFunc(path, func(c rune) bool { return !unicode.IsPrint(c) }) >= 0 {
		return nil, &httpError{status: http.StatusBadRequest, msg: "invalid path: it contains a non-printable character"}
	}
	if n := strings.Count(r.URL.RawQuery, "&"); n >= maxDataValues {
		return nil, &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("invalid query string: more than %d parameters", maxDataValues)}
	}
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &httpError{status: http.StatusBadRequest, msg: "invalid query string: " + err.Error()}
	}

	req := &logical.Request{Path: path, ClientToken: requestToken(r)}
	switch r.Method {
	case http.MethodGet:
		req.Operation = logical.ReadOperation
		if v, ok := query["list"]; ok {
			list, err := logical.ParseBool(v[0])
			if err != nil {
				return nil, &httpError{status: http.StatusBadRequest, msg: "list: " + err.Error()}
			}
			if list {
				req.Operation = logical.ListOperation
			}
		}
	case methodList:
		req.Operation = logical.ListOperation
	case http.MethodPut, http.MethodPost:
		req.Operation = logical.UpdateOperation
	case http.MethodDelete:
		req.Operation = logical.DeleteOperation
	default:
		return nil, &httpError{status: http.StatusMethodNotAllowed, msg: "unsupported method " + printable(r.Method)}
	}
	if v, ok := query["help"]; ok {
		help, err := logical.ParseBool(v[0])
		if err != nil {
			return nil, &httpError{status: http.StatusBadRequest, msg: "help: " + err.Error()}
		}
		if help {
			req.Operation = logical.HelpOperation
		}
	}

	switch req.Operation {
	case logical.ListOperation:
		if !strings.HasSuffix(req.Path, "/") {
			req.Path += "/"
		}
	case logical.UpdateOperation:
		if strings.HasSuffix(req.Path, "/") {
			return nil, &httpError{status: http.StatusBadRequest, msg: "cannot write to a path ending in '/'"}
		}
		if beforeBody != nil && hasBody(r) {
			if err := beforeBody(req); err != nil {
				return nil, err
			}
		}
		raw, err := readBody(w, r, maxBody)
		if err != nil {
			return nil, err
		}
		if req.Data, err = parseBody(r.Header.Get("Content-Type"), raw); err != nil {
			return nil, err
		}
		return req, nil
	}
	// GET, DELETE and LIST carry their data in the query string, as in
	// Vault; a body is not read.
	for k, vs := range query {
		if k == "list" || k == "help" {
			continue
		}
		if req.Data == nil {
			req.Data = map[string]any{}
		}
		if len(vs) == 1 {
			req.Data[k] = vs[0]
			continue
		}
		list := make([]any, len(vs))
		for i, v := range vs {
			list[i] = v
		}
		req.Data[k] = list
	}
	return req, nil
}

// requestToken is X-Vault-Token, else the token of an
// "Authorization: Bearer" header; other Authorization schemes are not
// lessor's and are ignored, as Vault ignores them.
func requestToken(r *http.Request) string {
	if t := r.Header.Get("X-Vault-Token"); t != "" {
		return t
	}
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

// hasBody tells whether r may carry a body: one of a length not declared
// (chunked) counts.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// readBody reads at most maxBody bytes of the body; more is 413.
func readBody(w http.ResponseWriter, r *http.Request, maxBody int64) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	if r.ContentLength > maxBody {
		return nil, tooLarge(nil)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(err)
		}
		return nil, &httpError{status: http.StatusBadRequest, msg: "read request body: " + err.Error(), err: err}
	}
	return raw, nil
}

func tooLarge(err error) error {
	return &httpError{status: http.StatusRequestEntityTooLarge, msg: "http: request body too large", err: err}
}

// parseBody reads a write's data: a JSON object (numbers stay
// json.Number, so 3600 is not a float), or a form when the content type
// says so and the body does not start like JSON. An empty body and JSON
// null are no data.
func parseBody(contentType string, raw []byte) (map[string]any, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return nil, nil
	}
	if mt, _, _ := mime.ParseMediaType(contentType); mt == "application/x-www-form-urlencoded" && trimmed[0] != '{' && trimmed[0] != '[' {
		if n := bytes.Count(trimmed, []byte("&")); n >= maxDataValues {
			return nil, &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("error parsing form body: more than %d parameters", maxDataValues)}
		}
		form, err := url.ParseQuery(string(trimmed))
		if err != nil {
			return nil, &httpError{status: http.StatusBadRequest, msg: "error parsing form body: " + err.Error()}
		}
		data := make(map[string]any, len(form))
		for k, vs := range form {
			data[k] = strings.Join(vs, ",")
		}
		return data, nil
	}
	if err := checkJSONShape(trimmed); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &httpError{status: http.StatusBadRequest, msg: "error parsing JSON: " + oneLine(err.Error())}
	}
	if dec.More() {
		return nil, &httpError{status: http.StatusBadRequest, msg: "error parsing JSON: data after the top-level object"}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &httpError{status: http.StatusBadRequest, msg: "error parsing JSON: data after the top-level object"}
	}
	switch d := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		return d, nil
	}
	return nil, &httpError{status: http.StatusBadRequest, msg: "error parsing JSON: the body must be a JSON object"}
}

// checkJSONShape refuses, in one pass that allocates nothing, a JSON text
// that nests deeper than maxDataDepth or holds more than maxDataValues
// values (elements and members), before the decoder builds its tree. A
// container's first value is the first byte after its opening that does
// not close it; each further one follows a comma outside a string. It
// need not understand invalid JSON, which the decoder refuses before it
// builds anything.
func checkJSONShape(b []byte) error {
	depth, values := 0, 0
	inString, opened := false, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '\\':
				i++ // the escaped byte cannot end the string
			case '"':
				inString = false
			}
			continue
		}
		if opened && c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			opened = false
			if c != ']' && c != '}' {
				values++
			}
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			if depth++; depth > maxDataDepth {
				return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("error parsing JSON: nested deeper than %d levels", maxDataDepth)}
			}
			opened = true
		case ']', '}':
			depth--
		case ',':
			values++
		}
		if values > maxDataValues {
			return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("error parsing JSON: more than %d values", maxDataValues)}
		}
	}
	return nil
}
