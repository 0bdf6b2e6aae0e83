package format

import (
	"bytes"
	"encoding/json"
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/lessorhq/lessor/pkg/logical"
)

// envelope is Vault's JSON secret, its fields in Vault's order. Scripts
// read .lease_id, .lease_duration, .renewable, .data.<k> and
// .auth.client_token from it.
type envelope struct {
	RequestID     string         `json:"request_id"`
	LeaseID       string         `json:"lease_id"`
	LeaseDuration int64          `json:"lease_duration"`
	Renewable     bool           `json:"renewable"`
	Data          map[string]any `json:"data"`
	Warnings      []string       `json:"warnings"`
	Auth          *authEnvelope  `json:"auth,omitempty"`
}

type authEnvelope struct {
	ClientToken      string            `json:"client_token"`
	Accessor         string            `json:"accessor"`
	Policies         []string          `json:"policies"`
	TokenPolicies    []string          `json:"token_policies"`
	IdentityPolicies []string          `json:"identity_policies"`
	Metadata         map[string]string `json:"metadata"`
	Orphan           bool              `json:"orphan"`
	EntityID         string            `json:"entity_id"`
	LeaseDuration    int64             `json:"lease_duration"`
	Renewable        bool              `json:"renewable"`
	// MFARequirement is always null: lessor has no MFA, but Vault's and
	// OpenBao's token JSON carry the key and a strict schema may expect it.
	MFARequirement *struct{} `json:"mfa_requirement"`
}

func newEnvelope(resp *logical.Response, requestID string) envelope {
	e := envelope{
		RequestID: requestID,
		Data:      resp.Data,
	}
	if s := resp.Secret; s != nil {
		e.LeaseID = s.LeaseID
		e.LeaseDuration = seconds(s.TTL)
		e.Renewable = s.Renewable
	}
	if len(resp.Warnings) > 0 {
		e.Warnings = resp.Warnings
	}
	if a := resp.Auth; a != nil {
		e.Auth = &authEnvelope{
			ClientToken:      a.ClientToken,
			Accessor:         a.Accessor,
			Policies:         a.Policies,
			TokenPolicies:    a.TokenPolicies,
			IdentityPolicies: a.IdentityPolicies,
			Metadata:         a.Metadata,
			Orphan:           a.Orphan,
			EntityID:         a.EntityID,
			LeaseDuration:    seconds(a.LeaseDuration),
			Renewable:        a.Renewable,
		}
	}
	return e
}

// encodeJSON is Vault's JSON output: MarshalIndent with 2 spaces and a
// newline.
func encodeJSON(v any) ([]byte, error) {
	out, err := IndentJSON(v)
	if err != nil {
		return nil, fmt.Errorf("encode json: %w", err)
	}
	return append(out, '\n'), nil
}

// IndentJSON is json.MarshalIndent with 2 spaces, and the C1 control
// characters U+0080–U+009F written as \u escapes: encoding/json escapes
// C0 controls but writes C1 ones as they are, and some terminals obey
// U+009B as CSI. The JSON means the same.
func IndentJSON(v any) ([]byte, error) {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return escapeC1(out), nil
}

// escapeC1 rewrites the UTF-8 encodings of U+0080–U+009F (C2 80 – C2 9F)
// in JSON text as \u0080–\u009f. Valid JSON holds them only inside
// strings, where the escape means the same character.
func escapeC1(b []byte) []byte {
	i := bytes.IndexByte(b, 0xc2)
	if i < 0 {
		return b
	}
	var out []byte
	for i >= 0 {
		if i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f {
			if out == nil {
				out = make([]byte, 0, len(b)+16)
			}
			out = append(out, b[:i]...)
			out = fmt.Appendf(out, `\u%04x`, rune(b[i+1]))
			b = b[i+2:]
			i = bytes.IndexByte(b, 0xc2)
			continue
		}
		next := bytes.IndexByte(b[i+1:], 0xc2)
		if next < 0 {
			break
		}
		i += 1 + next
	}
	if out == nil {
		return b
	}
	return append(out, b...)
}

// encodeYAML is Vault's YAML output: the document without its surrounding
// whitespace, then a newline.
func encodeYAML(v any) ([]byte, error) {
	out, err := yamlDocument(v)
	if err != nil {
		return nil, err
	}
	return append(bytes.TrimSpace(out), '\n'), nil
}

// yamlDocument encodes v as YAML by way of JSON, as Vault does (its yaml
// library converts through JSON): field names are the JSON ones, maps and
// structs alike come out with sorted keys, and what JSON cannot carry
// fails the same way in both formats.
func yamlDocument(v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode yaml: %w", err)
	}
	var tree any
	if err := yaml.Unmarshal(j, &tree); err != nil {
		return nil, fmt.Errorf("encode yaml: %w", err)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	// "- item" under its key, not indented below it, like Vault's output.
	enc.CompactSeqIndent()
	if err := enc.Encode(tree); err != nil {
		return nil, fmt.Errorf("encode yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode yaml: %w", err)
	}
	return buf.Bytes(), nil
}
