package tpm_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/attest/tpm"
)

func TestPolicyValidate(t *testing.T) {
	ca := newTestCA(t, "EK CA")
	h := strings.Repeat("ab", 32)
	ok := tpm.Policy{EKHashes: []string{h}, PCRs: pcrs07, AllowedPCRs: []map[string]string{zeroSet()}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (tpm.Policy{EKCAs: []string{ca.pem + "\n" + ca.pem}, PCRs: []int{7}, MaxQuoteAge: time.Hour}).Validate(); err != nil {
		t.Fatalf("CA-only policy: %v", err)
	}
	leafPEM := func() string {
		der := ca.ekCert(t, &ca.key.PublicKey, t0.Add(time.Hour))
		return "-----BEGIN CERTIFICATE-----\n" + b64(der) + "\n-----END CERTIFICATE-----\n"
	}()
	for _, c := range []struct {
		name, field string
		p           tpm.Policy
	}{
		{"no EK rule", "ek_hashes and ek_ca_pems", tpm.Policy{PCRs: pcrs07}},
		{"short hash", "ek_hashes[0]", tpm.Policy{EKHashes: []string{"abc"}, PCRs: pcrs07}},
		{"upper-case hash", "ek_hashes[1]", tpm.Policy{EKHashes: []string{h, strings.ToUpper(strings.Repeat("cd", 32))}, PCRs: pcrs07}},
		{"duplicate hash", "ek_hashes[1] repeats", tpm.Policy{EKHashes: []string{h, h}, PCRs: pcrs07}},
		{"CA garbage", "ek_ca_pems[0]", tpm.Policy{EKCAs: []string{"hello"}, PCRs: pcrs07}},
		{"CA trailing garbage", "ek_ca_pems[0]", tpm.Policy{EKCAs: []string{ca.pem + "junk"}, PCRs: pcrs07}},
		{"CA is a leaf", "not a CA", tpm.Policy{EKCAs: []string{leafPEM}, PCRs: pcrs07}},
		{"CA is a key", "want CERTIFICATE", tpm.Policy{EKCAs: []string{"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, PCRs: pcrs07}},
		{"no PCRs", "pcrs is empty", tpm.Policy{EKHashes: []string{h}}},
		{"PCR 24", "pcrs[1]", tpm.Policy{EKHashes: []string{h}, PCRs: []int{0, 24}}},
		{"negative PCR", "pcrs[0]", tpm.Policy{EKHashes: []string{h}, PCRs: []int{-1}}},
		{"unsorted PCRs", "pcrs[1]", tpm.Policy{EKHashes: []string{h}, PCRs: []int{7, 0}}},
		{"repeated PCR", "pcrs[1]", tpm.Policy{EKHashes: []string{h}, PCRs: []int{7, 7}}},
		{"empty set", "allowed_pcr_sets[0] is empty", tpm.Policy{EKHashes: []string{h}, PCRs: pcrs07, AllowedPCRs: []map[string]string{{}}}},
		{"set names unselected PCR", "allowed_pcr_sets[1] names PCR 9", tpm.Policy{EKHashes: []string{h}, PCRs: pcrs07,
			AllowedPCRs: []map[string]string{zeroSet(), {"9": zeroPCR}}}},
		{"set key not canonical", "allowed_pcr_sets[0]", tpm.Policy{EKHashes: []string{h}, PCRs: pcrs07, AllowedPCRs: []map[string]string{{"07": zeroPCR}}}},
		{"set value SHA-1 size", `allowed_pcr_sets[0]["7"]`, tpm.Policy{EKHashes: []string{h}, PCRs: pcrs07, AllowedPCRs: []map[string]string{{"7": zeroPCR[:40]}}}},
		{"quote age negative", "max_quote_age", tpm.Policy{EKHashes: []string{h}, PCRs: pcrs07, MaxQuoteAge: -time.Second}},
		{"quote age too long", "max_quote_age", tpm.Policy{EKHashes: []string{h}, PCRs: pcrs07, MaxQuoteAge: 2 * time.Hour}},
		{"quote age too short", "max_quote_age", tpm.Policy{EKHashes: []string{h}, PCRs: pcrs07, MaxQuoteAge: time.Second}},
	} {
		err := c.p.Validate()
		if !errors.Is(err, tpm.ErrInvalidPolicy) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v; want ErrInvalidPolicy naming %q", c.name, err, c.field)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	h := strings.Repeat("ab", 32)
	p, err := tpm.ParsePolicy([]byte(`{"ek_hashes":["` + h + `"],"pcrs":[0,7],"allowed_pcr_sets":[{"7":"` + zeroPCR + `"}],"max_quote_age":"2m"}`))
	if err != nil || p.MaxQuoteAge != 2*time.Minute || len(p.PCRs) != 2 || p.AllowedPCRs[0]["7"] != zeroPCR {
		t.Fatalf("ParsePolicy: %+v, %v", p, err)
	}
	p, err = tpm.ParsePolicy([]byte(`{"ek_hashes":["` + h + `"],"pcrs":[0],"max_quote_age":90}`))
	if err != nil || p.MaxQuoteAge != 90*time.Second {
		t.Fatalf("seconds: %+v, %v", p, err)
	}
	p, err = tpm.ParsePolicy([]byte(`{"ek_hashes":["` + h + `"],"pcrs":[0]}`))
	if err != nil || p.MaxQuoteAge != 0 || p.QuoteAge() != tpm.DefaultMaxQuoteAge {
		t.Fatalf("default age: %+v, %v", p, err)
	}
	// Round trip.
	p.MaxQuoteAge = 45 * time.Second
	b, err := json.Marshal(p)
	if err != nil || !strings.Contains(string(b), `"max_quote_age":"45s"`) {
		t.Fatalf("marshal: %s, %v", b, err)
	}
	if q, err := tpm.ParsePolicy(b); err != nil || q.MaxQuoteAge != p.MaxQuoteAge {
		t.Fatalf("round trip: %+v, %v", q, err)
	}
	for name, in := range map[string]string{
		"unknown field":  `{"ek_hashes":["` + h + `"],"pcrs":[0],"pcr":[1]}`,
		"trailing data":  `{"ek_hashes":["` + h + `"],"pcrs":[0]} {}`,
		"bad duration":   `{"ek_hashes":["` + h + `"],"pcrs":[0],"max_quote_age":"soon"}`,
		"huge seconds":   `{"ek_hashes":["` + h + `"],"pcrs":[0],"max_quote_age":99999999999}`,
		"fraction":       `{"ek_hashes":["` + h + `"],"pcrs":[0],"max_quote_age":1.5}`,
		"invalid policy": `{"pcrs":[0]}`,
		"not JSON":       `ek_hashes: x`,
	} {
		if _, err := tpm.ParsePolicy([]byte(in)); !errors.Is(err, tpm.ErrInvalidPolicy) {
			t.Errorf("%s: %v, want ErrInvalidPolicy", name, err)
		}
	}
}
