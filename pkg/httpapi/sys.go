package httpapi

import (
	"net/http"
	"strconv"
)

// health answers sys/health, which needs no token: Vault's body for an
// active, unsealed node, and its status codes, which a caller may change
// with ?activecode= (and the others, which never apply to lessor but are
// checked as Vault checks them).
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeErrors(w, http.StatusMethodNotAllowed, "unsupported method "+printable(r.Method))
		return
	}
	q := r.URL.Query()
	status := http.StatusOK
	for _, name := range []string{"activecode", "standbycode", "drsecondarycode", "performancestandbycode", "sealedcode", "uninitcode", "perfstandbyok", "standbyok"} {
		v := q.Get(name)
		if v == "" {
			continue
		}
		if name == "perfstandbyok" || name == "standbyok" {
			if _, err := strconv.ParseBool(v); err != nil {
				writeErrors(w, http.StatusBadRequest, "bad value for "+name+" parameter")
				return
			}
			continue
		}
		// A status line net/http can write and a client can take for an
		// answer: 1xx would announce a response still to come, and
		// net/http panics on a code outside 100-999.
		code, err := strconv.Atoi(v)
		if err != nil || code < 200 || code > 599 {
			writeErrors(w, http.StatusBadRequest, "bad value for "+name+" parameter")
			return
		}
		if name == "activecode" {
			status = code
		}
	}
	if r.Method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified {
		w.WriteHeader(status)
		return
	}
	id := s.core.StoreID()
	writeJSON(w, status, map[string]any{
		"initialized":                  true,
		"sealed":                       false,
		"standby":                      false,
		"performance_standby":          false,
		"replication_performance_mode": "disabled",
		"replication_dr_mode":          "disabled",
		"server_time_utc":              s.now().Unix(),
		"version":                      s.version,
		"cluster_name":                 "lessor-" + id,
		"cluster_id":                   id,
	})
}

// sealStatus answers sys/seal-status, which needs no token: a running
// server has unsealed its store, so it is always initialized and
// unsealed.
func (s *Server) sealStatus(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeErrors(w, http.StatusMethodNotAllowed, "unsupported method "+printable(r.Method))
		return
	}
	id := s.core.StoreID()
	writeJSON(w, http.StatusOK, map[string]any{
		"type":          "shamir",
		"initialized":   true,
		"sealed":        false,
		"t":             1,
		"n":             1,
		"progress":      0,
		"nonce":         "",
		"version":       s.version,
		"build_date":    "",
		"migration":     false,
		"recovery_seal": false,
		"storage_type":  s.storage,
		"cluster_name":  "lessor-" + id,
		"cluster_id":    id,
	})
}
