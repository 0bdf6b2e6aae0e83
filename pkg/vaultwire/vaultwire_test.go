package vaultwire

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lessorhq/lessor/pkg/logical"
)

// What the server writes, the client reads back as the same response.
func TestRoundTrip(t *testing.T) {
	for name, resp := range map[string]*logical.Response{
		"secret": {
			Data:       map[string]any{"username": "v-app", "password": "pw"},
			Secret:     &logical.Secret{LeaseID: "database/creds/app/abc", TTL: time.Hour, Renewable: true},
			Warnings:   []string{"a warning"},
			Connection: &logical.Connection{Host: "db.example", Port: 5432, Database: "app"},
		},
		"auth": {
			Auth: &logical.Auth{ClientToken: "t", Accessor: "a", Policies: []string{"default", "apps"},
				TokenPolicies: []string{"default", "apps"}, IdentityPolicies: []string{},
				Metadata: map[string]string{"k": "v"}, Orphan: true, LeaseDuration: 2 * time.Hour, Renewable: true, NumUses: 3},
		},
		"data only": {Data: map[string]any{"keys": []any{"a", "b"}}},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(FromLogical("req-1", "database", resp))
			if err != nil {
				t.Fatal(err)
			}
			var back Response
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if back.RequestID != "req-1" || back.MountType != "database" {
				t.Errorf("request_id %q, mount_type %q", back.RequestID, back.MountType)
			}
			if got := back.Logical(); !reflect.DeepEqual(got, resp) {
				t.Errorf("round trip:\n got %#v\nwant %#v\nJSON %s", got, resp, b)
			}
		})
	}
}

// Every key of Vault's envelope is present, in Vault's order; lessor's
// own key only when there is a connection to name.
func TestKeys(t *testing.T) {
	b, err := json.Marshal(FromLogical("r", "database", &logical.Response{Data: map[string]any{}}))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"request_id":"r","lease_id":"","renewable":false,"lease_duration":0,"data":{},"wrap_info":null,"warnings":null,"auth":null,"mount_type":"database"}`
	if string(b) != want {
		t.Fatalf("envelope\n got %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(FromLogical("r", "", &logical.Response{Auth: &logical.Auth{ClientToken: "t"}}))
	for _, k := range []string{`"token_type":"service"`, `"mfa_requirement":null`, `"num_uses":0`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("auth lacks %s: %s", k, b)
		}
	}
}
