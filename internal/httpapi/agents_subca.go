package httpapi

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"strings"

	"github.com/edgevault/edgevault/internal/engine/pki"
	"github.com/edgevault/edgevault/internal/logical"
)

// agentSubCARequest is the body of POST sys/agents/pki-sub-ca.
type agentSubCARequest struct {
	Mount     string `json:"mount"`      // the PKI mount, "pki" or "pki/"
	Role      string `json:"role"`       // a role of that mount with allow_offline_sub_ca
	PublicKey string `json:"public_key"` // PEM "PUBLIC KEY" (PKIX): the sub-CA's key, made by the agent
}

// serveAgentSubCA answers POST sys/agents/pki-sub-ca over mTLS: an enrolled,
// active agent of the request's zone (Authorize refuses a quarantined,
// revoked or superseded one) obtains an offline sub-CA for a role of one of
// the zone's PKI mounts, if that role allows it (allow_offline_sub_ca; see
// pki.Backend.SignAgentSubCA and docs/pki.md). The sub-CA names the agent
// the server authenticated on this connection, never one the body claims.
// The request is audited like any other, refusals included.
func serveAgentSubCA(s *Server, c *core, w http.ResponseWriter, r *http.Request, req *request) {
	_, a, ok := s.agentPost(c, w, r, req)
	if !ok {
		return
	}
	var body agentSubCARequest
	if err := remarshal(req.Data, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	b, err := zonePKI(c, body.Mount)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.Role == "" {
		s.writeError(w, r, logical.InvalidRequest("field \"role\": missing"))
		return
	}
	pub, err := pemPublicKey(body.PublicKey)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sub, err := b.SignAgentSubCA(r.Context(), body.Role, a.ID, pub)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("agent offline sub-CA issued", "zone", zoneLabel(a.Zone), "agent_id", a.ID, "mount", body.Mount,
		"role", body.Role, "serial_number", sub.SerialNumber)
	writeResponse(w, &logical.Response{Data: sub.Data()}, "pki")
}

// zonePKI returns the PKI engine mounted at mount in the zone.
func zonePKI(c *core, mount string) (*pki.Backend, error) {
	m := strings.Trim(mount, "/")
	if m == "" {
		return nil, logical.InvalidRequest("field \"mount\": missing (the PKI mount, such as \"pki\")")
	}
	e := c.mounts.Load().match(m + "/")
	if e == nil || e.Path != m+"/" {
		return nil, logical.InvalidRequest("field \"mount\": nothing is mounted at %q in this zone", m)
	}
	b, ok := e.handler.(*pki.Backend)
	if !ok {
		return nil, logical.InvalidRequest("field \"mount\": %q is a %s mount, not pki", m, e.Type)
	}
	return b, nil
}

// maxPublicKeyPEM bounds the public_key field.
const maxPublicKeyPEM = 16 << 10

// pemPublicKey reads a PEM "PUBLIC KEY" (PKIX) block.
func pemPublicKey(s string) (any, error) {
	if strings.TrimSpace(s) == "" {
		return nil, logical.InvalidRequest("field \"public_key\": missing (PEM PUBLIC KEY)")
	}
	if len(s) > maxPublicKeyPEM {
		return nil, logical.InvalidRequest("field \"public_key\": longer than %d bytes", maxPublicKeyPEM)
	}
	blk, _ := pem.Decode([]byte(s))
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, logical.InvalidRequest("field \"public_key\": want a PEM PUBLIC KEY block")
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, logical.InvalidRequest("field \"public_key\": %v", err)
	}
	return pub, nil
}
