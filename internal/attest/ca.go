package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/edgevault/edgevault/internal/attest/jointoken"
)

// Certificate lifetimes.
const (
	// DefaultCertTTL is an agent certificate's lifetime when none is given.
	DefaultCertTTL = time.Hour
	// MaxCertTTL is the longest agent certificate lifetime Issue accepts.
	MaxCertTTL = 24 * time.Hour
	// CAValidity is a zone CA's lifetime.
	CAValidity = 10 * 365 * 24 * time.Hour
	// DefaultClockSkew is how far NotBefore is backdated, so a relying
	// party whose clock is behind the issuer's still accepts a new
	// certificate.
	DefaultClockSkew = 5 * time.Minute
)

// CA is one zone's agent certificate authority: an ECDSA P-256 key and a
// self-signed certificate, constrained to the trust domain's SPIFFE IDs.
// It is immutable and safe for concurrent use.
type CA struct {
	trustDomain string
	zone        string
	skew        time.Duration
	cert        *x509.Certificate
	key         *ecdsa.PrivateKey
	pool        *x509.CertPool
	certPEM     []byte
}

// caDoc is the stored form of a CA (in the zone's encrypted store).
type caDoc struct {
	Cert []byte `json:"cert"` // DER
	Key  []byte `json:"key"`  // PKCS #8 DER
}

// newCA creates a CA for zone.
func newCA(trustDomain, zoneName string, skew time.Duration, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	label := jointoken.ZoneLabel(zoneName)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization:       []string{trustDomain},
			OrganizationalUnit: []string{"zone/" + label},
			CommonName:         "edgevault agent CA for zone " + label,
		},
		NotBefore:             now.Add(-skew),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		// X.509 URI name constraints can only name the host (RFC 5280
		// 4.2.1.10), so the zone path is enforced by Verify instead.
		PermittedURIDomains:         []string{trustDomain},
		PermittedDNSDomainsCritical: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	return buildCA(trustDomain, zoneName, skew, cert, key)
}

func buildCA(trustDomain, zoneName string, skew time.Duration, cert *x509.Certificate, key *ecdsa.PrivateKey) (*CA, error) {
	if !cert.IsCA {
		return nil, fmt.Errorf("%w: CA certificate is not a CA", ErrCorrupt)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%w: CA key does not match its certificate", ErrCorrupt)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{
		trustDomain: trustDomain,
		zone:        zoneName,
		skew:        skew,
		cert:        cert,
		key:         key,
		pool:        pool,
		certPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
	}, nil
}

func (c *CA) marshal() ([]byte, error) {
	k, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		return nil, fmt.Errorf("encode CA key: %w", err)
	}
	return json.Marshal(caDoc{Cert: c.cert.Raw, Key: k})
}

// parseCA decodes a stored CA of zone.
func parseCA(trustDomain, zoneName string, skew time.Duration, b []byte) (*CA, error) {
	var d caDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%w: CA document: %w", ErrCorrupt, err)
	}
	cert, err := x509.ParseCertificate(d.Cert)
	if err != nil {
		return nil, fmt.Errorf("%w: CA field \"cert\": %w", ErrCorrupt, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(d.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: CA field \"key\": %w", ErrCorrupt, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: CA field \"key\": not an ECDSA P-256 key", ErrCorrupt)
	}
	if len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != trustDomain ||
		len(cert.Subject.OrganizationalUnit) != 1 || cert.Subject.OrganizationalUnit[0] != "zone/"+jointoken.ZoneLabel(zoneName) {
		return nil, fmt.Errorf("%w: CA certificate is for %q %q, not trust domain %q zone %q",
			ErrCorrupt, cert.Subject.Organization, cert.Subject.OrganizationalUnit, trustDomain, zoneName)
	}
	return buildCA(trustDomain, zoneName, skew, cert, key)
}

// Zone returns the zone the CA issues for ("" is the root zone).
func (c *CA) Zone() string { return c.zone }

// Certificate returns the CA certificate. The caller must not modify it.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// CertificatePEM returns the CA certificate in PEM, for agents' trust
// stores and TLS ClientCAs pools.
func (c *CA) CertificatePEM() []byte { return append([]byte(nil), c.certPEM...) }

// Pool returns a pool holding only this CA, for tls.Config.ClientCAs.
func (c *CA) Pool() *x509.CertPool { return c.pool.Clone() }

// Issue signs an agent certificate for pub, which must be an ECDSA P-256
// public key, valid from now minus the clock skew allowance to now plus ttl
// (0 means DefaultCertTTL; at most MaxCertTTL; never past the CA's own
// NotAfter). The certificate has the clientAuth extended key usage and one
// URI SAN, the agent's SPIFFE ID.
func (c *CA) Issue(pub crypto.PublicKey, agentID string, ttl time.Duration, now time.Time) (*x509.Certificate, error) {
	fail := func(err error) (*x509.Certificate, error) {
		return nil, fmt.Errorf("zone %q: issue certificate for agent %q: %w", c.zone, agentID, err)
	}
	if err := ValidateAgentID(agentID); err != nil {
		return fail(err)
	}
	if err := checkAgentKey(pub); err != nil {
		return fail(err)
	}
	switch {
	case ttl < 0 || ttl > MaxCertTTL:
		return fail(fmt.Errorf("%w: TTL %s is outside 0..%s", ErrInvalidConfig, ttl, MaxCertTTL))
	case ttl == 0:
		ttl = DefaultCertTTL
	}
	serial, err := randomSerial()
	if err != nil {
		return fail(err)
	}
	notAfter := now.Add(ttl)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	name := AgentName{TrustDomain: c.trustDomain, Zone: c.zone, ID: agentID}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization:       []string{c.trustDomain},
			OrganizationalUnit: []string{"zone/" + jointoken.ZoneLabel(c.zone)},
			CommonName:         agentID,
		},
		NotBefore:             now.Add(-c.skew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{name.URI()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		return fail(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fail(err)
	}
	return cert, nil
}

// Verify checks that chain[0] is an agent certificate issued by this CA and
// valid at now, and returns the name in its SPIFFE ID. Further certificates
// in chain are ignored: agent certificates are signed by the zone CA
// directly. A certificate of another zone's CA, or one naming another zone,
// is refused with ErrCertZone; other failures are ErrCertExpired,
// ErrCertNotYetValid or ErrCertInvalid.
func (c *CA) Verify(chain []*x509.Certificate, now time.Time) (AgentName, error) {
	fail := func(err error) (AgentName, error) {
		return AgentName{}, fmt.Errorf("zone %q: verify agent certificate: %w", c.zone, err)
	}
	if len(chain) == 0 || chain[0] == nil {
		return fail(fmt.Errorf("%w: no certificate", ErrCertInvalid))
	}
	leaf := chain[0]
	if len(leaf.URIs) != 1 {
		return fail(fmt.Errorf("%w: %d URI SANs, want exactly one SPIFFE ID", ErrCertInvalid, len(leaf.URIs)))
	}
	name, err := ParseAgentName(leaf.URIs[0])
	if err != nil {
		return fail(err)
	}
	if name.TrustDomain != c.trustDomain || name.Zone != c.zone {
		return fail(fmt.Errorf("%w: certificate names trust domain %q zone %q", ErrCertZone, name.TrustDomain, name.Zone))
	}
	if leaf.IsCA {
		return fail(fmt.Errorf("%w: certificate is a CA", ErrCertInvalid))
	}
	if err := checkAgentKey(leaf.PublicKey); err != nil {
		return fail(fmt.Errorf("%w: %w", ErrCertInvalid, err))
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:       c.pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case err == nil:
		return name, nil
	case errors.As(err, &unknown):
		return fail(fmt.Errorf("%w: signed by an unknown CA (%q)", ErrCertZone, leaf.Issuer.CommonName))
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		if now.Before(leaf.NotBefore) {
			return fail(fmt.Errorf("%w: valid from %s", ErrCertNotYetValid, leaf.NotBefore.UTC().Format(time.RFC3339)))
		}
		if now.After(leaf.NotAfter) {
			return fail(fmt.Errorf("%w: at %s", ErrCertExpired, leaf.NotAfter.UTC().Format(time.RFC3339)))
		}
		return fail(fmt.Errorf("%w: the zone CA is outside its validity: %w", ErrCertInvalid, err))
	default:
		return fail(fmt.Errorf("%w: %w", ErrCertInvalid, err))
	}
}

// checkAgentKey accepts only ECDSA P-256 public keys.
func checkAgentKey(pub crypto.PublicKey) error {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k == nil || k.Curve != elliptic.P256() {
		return fmt.Errorf("%w: want an ECDSA P-256 public key, got %T", ErrInvalidKey, pub)
	}
	return nil
}

// ParseCSR parses a DER certificate signing request, checks its signature
// (proof that the agent holds the private key) and returns its public key,
// which must be ECDSA P-256. Everything else in the CSR is ignored: the CA
// decides names and lifetimes. Errors wrap ErrInvalidKey.
func ParseCSR(der []byte) (*ecdsa.PublicKey, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: CSR: %w", ErrInvalidKey, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: CSR signature: %w", ErrInvalidKey, err)
	}
	if err := checkAgentKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	return csr.PublicKey.(*ecdsa.PublicKey), nil
}

// randomSerial returns a positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random serial: %w", err)
	}
	b[0] &= 0x7f
	b[0] |= 0x40 // keep 16 bytes, positive, never zero
	return new(big.Int).SetBytes(b), nil
}

// EncodeChainPEM returns certs as concatenated PEM CERTIFICATE blocks.
func EncodeChainPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
