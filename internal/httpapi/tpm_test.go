package httpapi_test

import (
	"fmt"
	"strings"
	"testing"
)

// A zone's TPM attestation policy: written, read back, refused when it is
// not valid (naming the field), deleted; without one, TPM enrollment is
// refused; a join-token agent cannot be asked to re-attest.
func TestZoneAttestationPolicy(t *testing.T) {
	ts, _, _ := auditedServer(t)
	ag := enrolled(t, ts, "edge-1", "node-a")
	path := "sys/zones/edge-1/attestation"
	hash := strings.Repeat("ab", 32)
	if _, err := ts.client.Logical().Write("auth/attest/tpm/challenge", map[string]any{}); statusOf(err) != 400 {
		t.Fatalf("challenge in the root zone without a policy: %v", err)
	}
	z := ag.zone
	if _, err := z.Logical().Write("auth/attest/tpm/challenge", map[string]any{"ek_public": "AAAA", "ak_public": "AAAA"}); statusOf(err) != 400 ||
		!strings.Contains(err.Error(), "no TPM attestation policy") {
		t.Fatalf("challenge without a policy: %v", err)
	}
	for _, tc := range []struct {
		body map[string]any
		want string
	}{
		{map[string]any{"pcrs": []int{7}}, "ek_hashes"},
		{map[string]any{"ek_hashes": []string{"xyz"}, "pcrs": []int{7}}, "ek_hashes"},
		{map[string]any{"ek_hashes": []string{hash}, "pcrs": []int{24}}, "pcrs"},
		{map[string]any{"ek_hashes": []string{hash}, "pcrs": []int{7}, "allowed_pcr_sets": []map[string]string{{"8": hash}}}, "allowed_pcr_sets"},
		{map[string]any{"ek_hashes": []string{hash}, "pcrs": []int{7}, "max_quote_age": "3h"}, "max_quote_age"},
		{map[string]any{"ek_hashes": []string{hash}, "pcrs": []int{7}, "colour": "blue"}, "colour"},
	} {
		if _, err := ts.client.Logical().Write(path, tc.body); statusOf(err) != 400 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want 400 naming %q", tc.body, err, tc.want)
		}
	}
	if s, err := ts.client.Logical().Read(path); statusOf(err) != 404 && !(err == nil && s == nil) {
		t.Fatalf("a refused policy was stored: %v %v", s, err)
	}
	if _, err := ts.client.Logical().Write(path, map[string]any{"ek_hashes": []string{hash}, "pcrs": []int{0, 7}, "max_quote_age": "2m"}); err != nil {
		t.Fatal(err)
	}
	s, err := ts.client.Logical().Read(path)
	if err != nil || fmt.Sprint(s.Data["ek_hashes"]) != "["+hash+"]" || fmt.Sprint(s.Data["pcrs"]) != "[0 7]" || s.Data["max_quote_age"] != "2m0s" {
		t.Fatalf("policy read back: %v %v", s, err)
	}
	if _, err := z.Logical().Write(path, map[string]any{"ek_hashes": []string{hash}, "pcrs": []int{7}}); statusOf(err) != 404 {
		t.Fatalf("a zone token writing its own attestation policy: %v", err)
	}
	// With a policy, a challenge for an EK it does not allow is refused.
	if _, err := z.Logical().Write("auth/attest/tpm/challenge", map[string]any{"ek_public": "AAAA", "ak_public": "AAAA"}); statusOf(err) != 400 {
		t.Fatalf("challenge with malformed evidence: %v", err)
	}
	if _, err := z.Logical().Write("sys/agents/node-a/reattest", nil); statusOf(err) != 400 || !strings.Contains(err.Error(), "no TPM") {
		t.Fatalf("re-attestation of a join-token agent: %v", err)
	}
	if _, err := ts.client.Logical().Delete(path); err != nil {
		t.Fatal(err)
	}
	if s, err := ts.client.Logical().Read(path); statusOf(err) != 404 && !(err == nil && s == nil) {
		t.Fatalf("deleted policy: %v %v", s, err)
	}
}
