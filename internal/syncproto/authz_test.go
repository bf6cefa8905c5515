package syncproto

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/url"
	"testing"
)

func TestSPIFFEAuthorizer(t *testing.T) {
	authz := SPIFFEAuthorizer(testTrustDomain)
	req := func(uris ...string) *http.Request {
		leaf := &x509.Certificate{}
		for _, u := range uris {
			leaf.URIs = append(leaf.URIs, must(url.Parse(u)))
		}
		return &http.Request{TLS: &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}}
	}
	agent, z, err := authz(req("spiffe://edge.test/zone/factory-7/agent/node-1"))
	if err != nil || agent != "node-1" || z != "factory-7" {
		t.Fatalf("good ID: %q %q %v", agent, z, err)
	}
	bad := map[string]*http.Request{
		"no TLS":            {},
		"unverified":        {TLS: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}},
		"no URI":            req(),
		"two URIs":          req("spiffe://edge.test/zone/a/agent/x", "spiffe://edge.test/zone/b/agent/x"),
		"other domain":      req("spiffe://evil.test/zone/a/agent/x"),
		"https":             req("https://edge.test/zone/a/agent/x"),
		"short path":        req("spiffe://edge.test/zone/a"),
		"long path":         req("spiffe://edge.test/zone/a/agent/x/y"),
		"no agent id":       req("spiffe://edge.test/zone/a/agent/"),
		"bad zone name":     req("spiffe://edge.test/zone/A_B/agent/x"),
		"empty zone":        req("spiffe://edge.test/zone//agent/x"),
		"server, not agent": req("spiffe://edge.test/zone/a/server/x"),
	}
	for name, r := range bad {
		if _, _, err := authz(r); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%s: %v, want ErrUnauthorized", name, err)
		}
	}
}
