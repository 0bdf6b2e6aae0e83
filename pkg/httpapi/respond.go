package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/lessorhq/lessor/pkg/audit"
	"github.com/lessorhq/lessor/pkg/database/postgres"
	"github.com/lessorhq/lessor/pkg/logical"
	"github.com/lessorhq/lessor/pkg/storage"
	"github.com/lessorhq/lessor/pkg/token"
	"github.com/lessorhq/lessor/pkg/vaultwire"
)

// topLevelData are the sys paths whose data keys Vault also copies next
// to "data", for clients older than the envelope.
func topLevelData(path string) bool {
	for _, p := range []string{"sys/mounts", "sys/policy", "sys/capabilities", "sys/auth"} {
		if path == p || strings.HasPrefix(path, p+"/") || strings.HasPrefix(path, p+"-") {
			return true
		}
	}
	return false
}

// respond writes a successful response: 204 when there is nothing in it,
// 404 for a read of nothing or a list of no keys, else 200 and the
// envelope.
func (s *Server) respond(w http.ResponseWriter, req *logical.Request, op logical.Operation, resp *logical.Response) {
	if op == logical.HelpOperation {
		if resp == nil {
			writeErrors(w, http.StatusNotFound)
			return
		}
		help := map[string]any{}
		for k, v := range resp.Data {
			help[k] = v
		}
		if d, ok := resp.Data["description"].(string); ok {
			help["help"] = d
		}
		writeJSON(w, http.StatusOK, help)
		return
	}
	empty := resp == nil || (resp.Data == nil && resp.Secret == nil && resp.Auth == nil && len(resp.Warnings) == 0)
	switch {
	case empty && (op == logical.ReadOperation || op == logical.ListOperation):
		writeErrors(w, http.StatusNotFound)
		return
	case op == logical.ListOperation && !hasKeys(resp.Data["keys"]):
		if len(resp.Warnings) == 0 {
			writeErrors(w, http.StatusNotFound)
			return
		}
	case empty:
		w.WriteHeader(http.StatusNoContent)
		return
	}
	body, err := json.Marshal(vaultwire.FromLogical(req.ID, req.MountType, resp))
	if err == nil && topLevelData(req.Path) && len(resp.Data) > 0 {
		body, err = withTopLevel(body, resp.Data)
	}
	if err != nil {
		writeErrors(w, http.StatusInternalServerError, "encode response: "+err.Error())
		return
	}
	writeBody(w, http.StatusOK, body)
}

func hasKeys(v any) bool {
	switch k := v.(type) {
	case []string:
		return len(k) > 0
	case []any:
		return len(k) > 0
	}
	return false
}

// withTopLevel copies data's keys into the top level of the encoded
// envelope, leaving the envelope's own keys alone.
func withTopLevel(body []byte, data map[string]any) ([]byte, error) {
	var top map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		return nil, err
	}
	for k, v := range data {
		if _, ok := top[k]; !ok {
			top[k] = v
		}
	}
	return json.Marshal(top)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeErrors(w, http.StatusInternalServerError, "encode response: "+err.Error())
		return
	}
	writeBody(w, status, body)
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// writeErrors writes Vault's error body, {"errors":[...]}, the list empty
// when there is nothing to say (a read of nothing).
func writeErrors(w http.ResponseWriter, status int, msgs ...string) {
	if msgs == nil {
		msgs = []string{}
	}
	writeJSON(w, status, map[string][]string{"errors": msgs})
}

// writeError answers err with its status and its one-line message; a
// request that could not be audited gets Vault's plain 500, and the
// server's log the reason.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	var ae *audit.Error
	if errors.As(err, &ae) {
		// The reason names the log's file and what the host said of it:
		// the server's layout, which is not the client's business.
		s.log.Error("request not audited", "error", oneLine(err.Error()))
		writeErrors(w, http.StatusInternalServerError, "internal error: the request could not be audited")
		return
	}
	var causes []string
	if errors.Is(err, token.ErrBadToken) {
		causes = append(causes, "invalid_token")
	}
	if errors.Is(err, postgres.ErrPasswordEndsInNewline) {
		causes = append(causes, "password_ends_in_newline")
	}
	if len(causes) > 0 {
		w.Header().Set("X-Lessor-Cause", strings.Join(causes, ","))
	}
	writeErrors(w, statusOf(err), oneLine(err.Error()))
}

// statusOf maps an error of the pipeline to Vault's status code.
func statusOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.status
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	if errors.Is(err, logical.ErrPermissionDenied) {
		return http.StatusForbidden
	}
	var ce *logical.CodedError
	if errors.As(err, &ce) && ce.Status >= 400 && ce.Status < 600 {
		return ce.Status
	}
	switch {
	case errors.Is(err, logical.ErrUnsupportedPath):
		return http.StatusNotFound
	case errors.Is(err, logical.ErrUnsupportedOperation):
		return http.StatusMethodNotAllowed
	case errors.Is(err, storage.ErrBusy), errors.Is(err, storage.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// oneLine keeps an error message on one line, as the CLI prints it:
// PostgreSQL and parser errors may carry newlines.
func oneLine(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\r", " ")
	parts := strings.Split(s, "\n")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return strings.Join(parts, "; ")
}
