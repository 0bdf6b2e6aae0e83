// Package vaultwire is the JSON body of Vault's HTTP API responses, as
// lessor's server writes it (pkg/httpapi) and its client reads it back
// (pkg/apiclient), with the conversions from and to a logical.Response:
// one definition, so that the two ends cannot drift apart.
package vaultwire

import (
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
)

// Response is Vault's response envelope, its fields in Vault's order.
type Response struct {
	RequestID     string         `json:"request_id"`
	LeaseID       string         `json:"lease_id"`
	Renewable     bool           `json:"renewable"`
	LeaseDuration int64          `json:"lease_duration"`
	Data          map[string]any `json:"data"`
	WrapInfo      any            `json:"wrap_info"`
	Warnings      []string       `json:"warnings"`
	Auth          *Auth          `json:"auth"`
	MountType     string         `json:"mount_type"`
	// Connection is lessor's own key, which Vault's clients ignore: where
	// a database credential logs in (logical.Response.Connection).
	Connection *Connection `json:"lessor_connection,omitempty"`
}

// Auth is the envelope's "auth" object: a token and its policies.
type Auth struct {
	ClientToken      string            `json:"client_token"`
	Accessor         string            `json:"accessor"`
	Policies         []string          `json:"policies"`
	TokenPolicies    []string          `json:"token_policies"`
	IdentityPolicies []string          `json:"identity_policies"`
	Metadata         map[string]string `json:"metadata"`
	LeaseDuration    int64             `json:"lease_duration"`
	Renewable        bool              `json:"renewable"`
	EntityID         string            `json:"entity_id"`
	TokenType        string            `json:"token_type"`
	Orphan           bool              `json:"orphan"`
	MFARequirement   any               `json:"mfa_requirement"`
	NumUses          int               `json:"num_uses"`
}

// Connection is where a database credential logs in.
type Connection struct {
	Host        string `json:"host,omitempty"`
	Port        uint16 `json:"port,omitempty"`
	Database    string `json:"database,omitempty"`
	SSLMode     string `json:"sslmode,omitempty"`
	SSLRootCert string `json:"sslrootcert,omitempty"`
}

// FromLogical is the envelope of resp, answering the request requestID
// on a mount of type mountType.
func FromLogical(requestID, mountType string, resp *logical.Response) *Response {
	e := &Response{RequestID: requestID, Data: resp.Data, MountType: mountType}
	if len(resp.Warnings) > 0 {
		e.Warnings = resp.Warnings
	}
	if s := resp.Secret; s != nil {
		e.LeaseID, e.Renewable, e.LeaseDuration = s.LeaseID, s.Renewable, seconds(s.TTL)
	}
	if a := resp.Auth; a != nil {
		e.Auth = &Auth{
			ClientToken: a.ClientToken, Accessor: a.Accessor,
			Policies: a.Policies, TokenPolicies: a.TokenPolicies, IdentityPolicies: a.IdentityPolicies,
			Metadata: a.Metadata, LeaseDuration: seconds(a.LeaseDuration), Renewable: a.Renewable,
			EntityID: a.EntityID, TokenType: "service", Orphan: a.Orphan, NumUses: a.NumUses,
		}
	}
	if c := resp.Connection; c != nil && (c.Host != "" || c.Port != 0 || c.Database != "" || c.SSLMode != "" || c.SSLRootCert != "") {
		e.Connection = &Connection{Host: c.Host, Port: c.Port, Database: c.Database, SSLMode: c.SSLMode, SSLRootCert: c.SSLRootCert}
	}
	return e
}

// Logical is the response e carries, as the local pipeline would have
// returned it.
func (e *Response) Logical() *logical.Response {
	resp := &logical.Response{Data: e.Data, Warnings: e.Warnings}
	if e.LeaseID != "" || e.LeaseDuration != 0 {
		resp.Secret = &logical.Secret{LeaseID: e.LeaseID, TTL: time.Duration(e.LeaseDuration) * time.Second, Renewable: e.Renewable}
	}
	if a := e.Auth; a != nil {
		resp.Auth = &logical.Auth{
			ClientToken: a.ClientToken, Accessor: a.Accessor,
			Policies: a.Policies, TokenPolicies: a.TokenPolicies, IdentityPolicies: a.IdentityPolicies,
			Metadata: a.Metadata, Orphan: a.Orphan, EntityID: a.EntityID,
			LeaseDuration: time.Duration(a.LeaseDuration) * time.Second, Renewable: a.Renewable, NumUses: a.NumUses,
		}
	}
	if c := e.Connection; c != nil {
		resp.Connection = &logical.Connection{Host: c.Host, Port: c.Port, Database: c.Database, SSLMode: c.SSLMode, SSLRootCert: c.SSLRootCert}
	}
	return resp
}

func seconds(d time.Duration) int64 { return int64(d / time.Second) }
