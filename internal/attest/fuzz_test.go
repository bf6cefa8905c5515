package attest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net/url"
	"testing"
)

func FuzzParseAgentName(f *testing.F) {
	for _, s := range []string{
		"spiffe://edgevault.test/zone/east/agent/agent-0123abcd",
		"spiffe://edgevault.test/zone/root/agent/node-1",
		"spiffe://edgevault.test/zone/east/agent/",
		"spiffe://edgevault.test/zone/east/agent/a/b",
		"spiffe://user@edgevault.test:8/zone/east/agent/a",
		"spiffe://edgevault.test/zone/%65ast/agent/a",
		"https://edgevault.test/zone/east/agent/a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		n, err := ParseAgentName(u)
		if err != nil {
			return
		}
		// Whatever is accepted is canonical: it prints back to itself.
		back, err := ParseAgentName(n.URI())
		if err != nil || back != n {
			t.Fatalf("%q parsed to %+v, which re-parses to %+v, %v", s, n, back, err)
		}
		if n.URI().String() != u.String() {
			t.Fatalf("%q accepted but prints as %q", u.String(), n.URI().String())
		}
	})
}

func FuzzParseCSR(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	f.Add(der)
	k384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der384, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k384)
	f.Add(der384)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := ParseCSR(b)
		if err != nil {
			return
		}
		if checkAgentKey(pub) != nil {
			t.Fatal("accepted a key that is not P-256")
		}
	})
}

func FuzzParseAgent(f *testing.F) {
	f.Add([]byte(`{"id":"agent-1","zone":"east","method":"join-token","strength":"weak","cert_serial":"4f","cert_not_after":"2026-11-26T13:00:00Z","enrolled_at":"2026-11-26T12:00:00Z","acked_seq":3,"status":"active"}`))
	f.Add([]byte(`{"id":"agent-1","status":"paused"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseAgent(b)
		if err != nil {
			return
		}
		if ValidateAgentID(a.ID) != nil || !a.Status.valid() {
			t.Fatalf("accepted bad record %+v", a)
		}
	})
}
