package pki

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
)

// Offline sub-CA lifetimes (a role's offline_sub_ca_ttl).
const (
	// DefaultOfflineSubCATTL is offline_sub_ca_ttl when a role sets none.
	DefaultOfflineSubCATTL = 24 * time.Hour
	// MinOfflineSubCATTL is the shortest offline_sub_ca_ttl: an agent
	// refreshes its sub-CA at two thirds of its life.
	MinOfflineSubCATTL = 10 * time.Minute
	// MaxOfflineSubCATTL is the longest offline_sub_ca_ttl: it bounds how
	// long a stolen agent can mint certificates without the CRL.
	MaxOfflineSubCATTL = 7 * 24 * time.Hour
)

// Errors of offline sub-CAs.
var (
	// ErrOfflineSubCANotAllowed refuses a sub-CA for a role whose
	// allow_offline_sub_ca is false (the default). It matches
	// logical.ErrInvalidRequest (400).
	ErrOfflineSubCANotAllowed = &apiError{logical.ErrInvalidRequest,
		"field \"allow_offline_sub_ca\": this role does not allow an offline sub-CA for agents"}
	// ErrSubCAExpired means a LocalIssuer's sub-CA has expired (or is not
	// yet valid): nothing can be issued from it until it is refreshed.
	ErrSubCAExpired = errors.New("pki: the offline sub-CA is not valid now")
)

// parseOfflineSubCA reads allow_offline_sub_ca's companion
// offline_sub_ca_ttl and, when the role allows a sub-CA, checks that one
// can be made: a lifetime that holds the role's ttl, a key type issue
// accepts, and names a name constraint can express.
func (r *role) parseOfflineSubCA(data map[string]any) error {
	d, err := readTTL(data, "offline_sub_ca_ttl", DefaultOfflineSubCATTL)
	if err != nil {
		return err
	}
	if d < MinOfflineSubCATTL || d > MaxOfflineSubCATTL {
		return logical.InvalidRequest("field \"offline_sub_ca_ttl\": %s is outside %s to %s", d, MinOfflineSubCATTL, MaxOfflineSubCATTL)
	}
	r.OfflineSubCATTL = int64(d / time.Second)
	if !r.AllowOfflineSubCA {
		return nil
	}
	if ttl := time.Duration(r.TTL) * time.Second; ttl > d {
		return logical.InvalidRequest("field \"offline_sub_ca_ttl\": %s is shorter than the role's ttl %s", d, ttl)
	}
	if r.KeyType == keyTypeAny {
		return logical.InvalidRequest("field \"allow_offline_sub_ca\": needs a key_type agents can generate (rsa, ec or ed25519), not \"any\"")
	}
	_, err = r.nameConstraints()
	return err
}

// offlineTTL is the role's sub-CA lifetime (roles stored before the field
// existed get the default).
func (r role) offlineTTL() time.Duration {
	if r.OfflineSubCATTL <= 0 {
		return DefaultOfflineSubCATTL
	}
	return time.Duration(r.OfflineSubCATTL) * time.Second
}

// constraints are a sub-CA's name constraints.
type constraints struct {
	permittedDNS []string
	excludedDNS  []string
	excludeIPs   bool
}

// invalidName is the reserved top-level domain (RFC 2606) that a sub-CA's
// e-mail and URI constraints permit, so that no real e-mail address or URI
// (a SPIFFE ID, say) can be certified below it.
const invalidName = "invalid"

// nameConstraints turns the role's names into X.509 name constraints
// (RFC 5280 4.2.1.10) as Go and OpenSSL apply them: "d" permits d and every
// name below it, ".d" only the names below it. allow_any_name cannot be
// constrained and glob patterns other than "*.d" cannot be expressed, so
// both are refused; where the role is narrower than a constraint can say
// (a bare domain with wildcard certificates) the constraint is the next
// wider one, and the agent still applies the role's own checks.
func (r role) nameConstraints() (constraints, error) {
	var c constraints
	if r.AllowAnyName {
		return c, logical.InvalidRequest("field \"allow_offline_sub_ca\": a role with allow_any_name cannot be name-constrained; list allowed_domains instead")
	}
	var bareOnly []string
	for i, d := range r.AllowedDomains {
		d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if d == "" {
			continue
		}
		if strings.Contains(d, "*") {
			if !r.AllowGlobDomains {
				continue // a literal "*" matches no host name
			}
			rest, ok := strings.CutPrefix(d, "*.")
			if !ok || rest == "" || strings.ContainsAny(rest, "*?[") {
				return c, logical.InvalidRequest("field \"allowed_domains\": item %d (%q): only globs of the form \"*.example.com\" can be a name constraint", i, truncate(d))
			}
			c.permittedDNS = appendUnique(c.permittedDNS, "."+rest)
			continue
		}
		if strings.ContainsAny(d, "?[") && r.AllowGlobDomains {
			return c, logical.InvalidRequest("field \"allowed_domains\": item %d (%q): only globs of the form \"*.example.com\" can be a name constraint", i, truncate(d))
		}
		switch {
		case r.AllowBareDomains && r.AllowSubdomains:
			c.permittedDNS = appendUnique(c.permittedDNS, d)
		case r.AllowSubdomains:
			c.permittedDNS = appendUnique(c.permittedDNS, "."+d)
		case r.AllowBareDomains:
			c.permittedDNS = appendUnique(c.permittedDNS, d)
			if !r.AllowWildcardCertificates { // "*.d" is allowed with a bare d
				bareOnly = append(bareOnly, d)
			}
		}
	}
	if r.AllowLocalhost {
		c.permittedDNS = appendUnique(c.permittedDNS, "localhost")
		c.permittedDNS = appendUnique(c.permittedDNS, "localdomain")
	}
	if len(c.permittedDNS) == 0 {
		// An empty permitted list would constrain nothing.
		return c, logical.InvalidRequest("field \"allowed_domains\": the role allows no host names (set allowed_domains with allow_bare_domains or allow_subdomains), so it cannot have an offline sub-CA")
	}
	for _, d := range bareOnly {
		below := false
		for _, p := range c.permittedDNS {
			if p != d && strings.HasSuffix(p, "."+d) {
				below = true // another permitted entry lives under d
			}
		}
		if !below {
			c.excludedDNS = appendUnique(c.excludedDNS, "."+d)
		}
	}
	c.excludeIPs = !r.AllowIPSANs
	return c, nil
}

func appendUnique(l []string, s string) []string {
	if containsString(l, s) {
		return l
	}
	return append(l, s)
}

// leafExtKeyUsage is the extended key usage of the role's leaves.
func (r role) leafExtKeyUsage() []x509.ExtKeyUsage {
	var out []x509.ExtKeyUsage
	if r.ServerFlag {
		out = append(out, x509.ExtKeyUsageServerAuth)
	}
	if r.ClientFlag {
		out = append(out, x509.ExtKeyUsageClientAuth)
	}
	for _, u := range r.ExtKeyUsage {
		if eku := extKeyUsages[strings.ToLower(u)]; !containsEKU(out, eku) {
			out = append(out, eku)
		}
	}
	return out
}

// Constraints are the rules of one role that an agent's offline issuer
// enforces: the role itself (Vault's field names, durations in seconds, as
// roles/:name reads it) and its name. The agent applies them with the same
// code as issue/:role (LocalIssuer); the sub-CA's name constraints bound
// what a stolen key could sign regardless. The zero value allows nothing.
type Constraints struct {
	name string
	r    role
}

// Role is the role's name.
func (c Constraints) Role() string { return c.name }

// TTL and MaxTTL are the role's ttl and max_ttl.
func (c Constraints) TTL() time.Duration { return time.Duration(c.r.TTL) * time.Second }

// MaxTTL is the role's max_ttl.
func (c Constraints) MaxTTL() time.Duration { return time.Duration(c.r.MaxTTL) * time.Second }

// KeyType is the role's key_type ("rsa", "ec" or "ed25519") and KeyBits
// its key_bits (0 for Ed25519).
func (c Constraints) KeyType() (string, int) { return c.r.KeyType, c.r.KeyBits }

// AllowedDomains is the role's allowed_domains.
func (c Constraints) AllowedDomains() []string { return append([]string(nil), c.r.AllowedDomains...) }

// Data is the role's fields with "role" set to its name, as JSON-ready data.
func (c Constraints) Data() map[string]any {
	m := c.r.data()
	m["role"] = c.name
	return m
}

// MarshalJSON encodes Data.
func (c Constraints) MarshalJSON() ([]byte, error) { return json.Marshal(c.Data()) }

// UnmarshalJSON decodes what MarshalJSON wrote and checks it as a role
// write would: a key type agents can generate, ttl ≤ max_ttl, names a
// constraint can express. Errors name the field.
func (c *Constraints) UnmarshalJSON(raw []byte) error {
	var v struct {
		role
		Role string `json:"role"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("pki: constraints: %w", err)
	}
	r := v.role
	if err := checkRoleName(v.Role); err != nil {
		return fmt.Errorf("pki: constraints: field \"role\": %w", err)
	}
	kt, bits, err := normalizeKey(r.KeyType, int64(r.KeyBits), false)
	if err != nil {
		return fmt.Errorf("pki: constraints: %w", err)
	}
	r.KeyType, r.KeyBits = kt, bits
	switch {
	case r.MaxTTL <= 0 || r.TTL < 0 || r.TTL > r.MaxTTL:
		return fmt.Errorf("pki: constraints: field \"ttl\": %d is not within 0 to max_ttl %d", r.TTL, r.MaxTTL)
	case len(r.AllowedDomains) > maxRoleItems || len(r.ExtKeyUsage) > maxRoleItems || len(r.KeyUsage) > maxRoleItems:
		return fmt.Errorf("pki: constraints: field \"allowed_domains\": at most %d items", maxRoleItems)
	}
	for _, u := range r.KeyUsage {
		if _, ok := keyUsages[strings.ToLower(u)]; !ok {
			return fmt.Errorf("pki: constraints: field \"key_usage\": unknown key usage %q", truncate(u))
		}
	}
	for _, u := range r.ExtKeyUsage {
		if _, ok := extKeyUsages[strings.ToLower(u)]; !ok {
			return fmt.Errorf("pki: constraints: field \"ext_key_usage\": unknown extended key usage %q", truncate(u))
		}
	}
	if _, err := r.nameConstraints(); err != nil {
		return fmt.Errorf("pki: constraints: %w", err)
	}
	c.name, c.r = v.Role, r
	return nil
}

// SubCA is an agent's offline sub-CA, as SignAgentSubCA made it.
type SubCA struct {
	// Certificate is the sub-CA certificate (for the agent's key).
	Certificate *x509.Certificate
	// IssuingCA is the mount's CA certificate (PEM) and CAChain the mount's
	// CA then its parents up to the root (PEM).
	IssuingCA string
	CAChain   []string
	// SerialNumber is the sub-CA's serial (colon form): pki/revoke takes it.
	SerialNumber string
	// Constraints are the role's rules the agent must apply.
	Constraints Constraints
}

// Data is the sub-CA as response data: certificate, issuing_ca, ca_chain,
// serial_number, expiration (Unix seconds) and constraints.
func (s SubCA) Data() map[string]any {
	return map[string]any{
		"certificate":   pemString("CERTIFICATE", s.Certificate.Raw),
		"issuing_ca":    s.IssuingCA,
		"ca_chain":      s.CAChain,
		"serial_number": s.SerialNumber,
		"expiration":    s.Certificate.NotAfter.Unix(),
		"constraints":   s.Constraints.Data(),
	}
}

// maxAgentID bounds the agent ID a sub-CA's subject carries (RFC 5280's
// upper bound for a common name).
const maxAgentID = 64

// SignAgentSubCA certifies pub, an agent's key, as a CA that may issue for
// role while the agent is offline: CA:TRUE with path length 0, key usage
// certSign, cRLSign and digitalSignature, name constraints (critical)
// permitting the role's names only (IP addresses excluded unless
// allow_ip_sans; no e-mail address or URI), the role's extended key usages,
// the agent ID as subject and a lifetime of the role's offline_sub_ca_ttl,
// never past the mount's CA. The certificate is stored like any issued one
// (listed by certs, revoked by revoke, on the CRL once revoked), whatever
// the role's no_store. It refuses with ErrOfflineSubCANotAllowed unless the
// role has allow_offline_sub_ca; other refusals match
// logical.ErrInvalidRequest and name the field.
func (b *Backend) SignAgentSubCA(ctx context.Context, roleName, agentID string, pub crypto.PublicKey) (SubCA, error) {
	if agentID == "" || len(agentID) > maxAgentID || !validHostname(agentID) {
		return SubCA{}, logical.InvalidRequest("field \"agent_id\": %q is not an agent ID (1 to %d characters of a host name)", truncate(agentID), maxAgentID)
	}
	kt, bits, ok := publicKeyType(pub)
	switch {
	case !ok:
		return SubCA{}, logical.InvalidRequest("field \"public_key\": unsupported public key type %T", pub)
	case kt == keyTypeRSA && bits < 2048:
		return SubCA{}, logical.InvalidRequest("field \"public_key\": RSA key of %d bits is too small (minimum 2048)", bits)
	}
	r, err := b.loadRole(ctx, roleName)
	if err != nil {
		return SubCA{}, err
	}
	if !r.AllowOfflineSubCA {
		return SubCA{}, fmt.Errorf("%w (role %q)", ErrOfflineSubCANotAllowed, truncate(roleName))
	}
	nc, err := r.nameConstraints()
	if err != nil {
		return SubCA{}, err
	}
	ca, err := b.loadCA(ctx)
	if err != nil {
		return SubCA{}, err
	}
	if err := checkPathRoom(ca); err != nil {
		return SubCA{}, err
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: agentID, OrganizationalUnit: []string{"edgevault agent offline sub-CA"},
			Organization: r.Organization},
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLen:                  0,
		MaxPathLenZero:              true,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:                 r.leafExtKeyUsage(),
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         nc.permittedDNS,
		ExcludedDNSDomains:          nc.excludedDNS,
		PermittedEmailAddresses:     []string{invalidName},
		PermittedURIDomains:         []string{invalidName},
	}
	if nc.excludeIPs {
		tmpl.ExcludedIPRanges = []*net.IPNet{
			{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
		}
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return SubCA{}, err
	}
	now := b.clock()
	tmpl.NotBefore = now.Add(-notBeforeSkew)
	tmpl.NotAfter = now.Add(r.offlineTTL())
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	if !tmpl.NotAfter.After(now) {
		return SubCA{}, logical.InvalidRequest("field \"offline_sub_ca_ttl\": the mount's CA expires at %s", ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return SubCA{}, fmt.Errorf("pki: sign offline sub-CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return SubCA{}, fmt.Errorf("pki: offline sub-CA: %w", err)
	}
	serial := formatSerial(tmpl.SerialNumber)
	if err := b.store.Put(ctx, prefixCert+storageSerial(serial), der); err != nil {
		return SubCA{}, fmt.Errorf("pki: store offline sub-CA %s: %w", serial, err)
	}
	b.log.Info("pki: offline sub-CA issued", "role", roleName, "agent_id", agentID, "serial_number", serial,
		"not_after", tmpl.NotAfter.UTC().Format(time.RFC3339))
	return SubCA{Certificate: cert, IssuingCA: ca.certPEM, CAChain: append([]string(nil), ca.chainPEM...),
		SerialNumber: serial, Constraints: Constraints{name: roleName, r: r}}, nil
}

// checkPathRoom refuses a sub-CA that a path length constraint of the
// mount's CA, or of a CA above it, would make invalid.
func checkPathRoom(ca *caState) error {
	chain := []*x509.Certificate{ca.cert}
	for i, p := range ca.rec.Parents {
		c, err := x509.ParseCertificate(p)
		if err != nil {
			return fmt.Errorf("pki: stored CA parent %d: %w", i, err)
		}
		chain = append(chain, c)
	}
	for i, c := range chain {
		// Below chain[i] would sit the sub-CA and chain[0..i-1].
		if c.BasicConstraintsValid && c.MaxPathLen >= 0 && (c.MaxPathLen > 0 || c.MaxPathLenZero) && i+1 > c.MaxPathLen {
			return logical.InvalidRequest("field \"allow_offline_sub_ca\": the mount's CA chain (certificate %d, max_path_length %d) leaves no room for a sub-CA", i, c.MaxPathLen)
		}
	}
	return nil
}

// LocalIssuer issues certificates for one role with a key other than the
// mount's CA: an agent's offline sub-CA. Issue validates a request with the
// code issue/:role uses and answers in its shape; nothing is stored and no
// lease is made. The fields must not change while Issue runs.
type LocalIssuer struct {
	// Constraints are the role's rules (from SubCA).
	Constraints Constraints
	// CA is the sub-CA certificate and Key its private key.
	CA  *x509.Certificate
	Key crypto.Signer
	// Chain is ca_chain of the answers: the sub-CA then the mount's chain (PEM).
	Chain []string
	// Clock returns the time; nil means time.Now.
	Clock func() time.Time
}

// Issue serves one issue/:role request (data decoded as JSON with numbers
// kept, like the server does) and returns Vault's response: certificate,
// issuing_ca (the sub-CA), ca_chain, private_key, private_key_type,
// serial_number, expiration. A request without ttl is given the role's ttl,
// cut short at the sub-CA's expiry; a ttl that would outlive the sub-CA is
// refused (400 naming "ttl"), as the server refuses one past its CA. Errors
// are logical.ErrInvalidRequest naming the field, or ErrSubCAExpired.
func (li *LocalIssuer) Issue(data map[string]any) (*logical.Response, error) {
	if li.CA == nil || li.Key == nil || !li.CA.IsCA || !publicKeysEqual(li.Key.Public(), li.CA.PublicKey) {
		return nil, errors.New("pki: local issuer: the key does not belong to the sub-CA")
	}
	roleName := li.Constraints.name
	lr, err := parseIssueRequest(data, roleName)
	if err != nil {
		return nil, err
	}
	r := li.Constraints.r
	tmpl, err := leafTemplate(r, lr)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if li.Clock != nil {
		now = li.Clock()
	}
	if !now.Before(li.CA.NotAfter) || now.Before(li.CA.NotBefore) {
		return nil, ErrSubCAExpired
	}
	tmpl.NotBefore = now.Add(-notBeforeSkew)
	if tmpl.NotBefore.Before(li.CA.NotBefore) {
		tmpl.NotBefore = li.CA.NotBefore
	}
	tmpl.NotAfter = now.Add(lr.ttl)
	if tmpl.NotAfter.After(li.CA.NotAfter) {
		if lr.hasTTL {
			return nil, logical.InvalidRequest("field \"ttl\": the certificate would outlive the agent's offline sub-CA (which expires %s)", li.CA.NotAfter.UTC().Format(time.RFC3339))
		}
		tmpl.NotAfter = li.CA.NotAfter
	}
	key, err := issueKey(r, roleName)
	if err != nil {
		return nil, err
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, li.CA, key.Public(), li.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: local issuer: sign certificate: %w", err)
	}
	issuing := pemString("CERTIFICATE", li.CA.Raw)
	chain := li.Chain
	if len(chain) == 0 {
		chain = []string{issuing}
	}
	resp := &logical.Response{Data: map[string]any{
		"certificate":   pemString("CERTIFICATE", der),
		"issuing_ca":    issuing,
		"ca_chain":      append([]string(nil), chain...),
		"serial_number": formatSerial(tmpl.SerialNumber),
		"expiration":    tmpl.NotAfter.Unix(),
	}}
	if err := addPrivateKey(resp, key, r, lr); err != nil {
		return nil, err
	}
	resp.Warnings = issueFields.unknownWarnings(data)
	return resp, nil
}
