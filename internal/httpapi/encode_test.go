package httpapi

import (
	"encoding/json"
	"testing"

	"github.com/edgevault/edgevault/internal/logical"
)

func TestAppendEnvelope(t *testing.T) {
	resp := &logical.Response{Data: map[string]any{"k": "v"}, Warnings: []string{"w"}, LeaseDuration: 5,
		Auth: &logical.Auth{ClientToken: "evs.x", Policies: []string{"default"}}}
	b, err := appendEnvelope(nil, "id-1", resp, "kv")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	for _, k := range []string{"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings", "auth", "mount_type"} {
		if _, ok := got[k]; !ok {
			t.Errorf("missing %q in %s", k, b)
		}
	}
	if got["auth"].(map[string]any)["client_token"] != "evs.x" || got["lease_duration"] != 5.0 {
		t.Errorf("envelope = %s", b)
	}
}
