package pki

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"path"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
)

// issueFields are the fields issue/:role and sign/:role understand.
var issueFields = fieldSet{"common_name", "alt_names", "ip_sans", "ttl", "format", "private_key_format",
	"exclude_cn_from_sans", "csr", "issuer_ref", "uri_sans", "other_sans", "not_after", "user_ids",
	"remove_roots_from_chain", "serial_number"}

// leafRequest is a parsed issue or sign request.
type leafRequest struct {
	cn        string
	sans      sans
	ttl       time.Duration
	hasTTL    bool
	keyFormat string
	excludeCN bool
}

// parseLeafRequest reads the fields shared by issue and sign.
func parseLeafRequest(data map[string]any) (*leafRequest, error) {
	if err := refuseSet(data, "uri_sans", "other_sans", "not_after", "user_ids"); err != nil {
		return nil, err
	}
	lr := &leafRequest{}
	var err error
	if lr.cn, err = commonName(data, false); err != nil {
		return nil, err
	}
	if lr.sans, err = readSANs(data); err != nil {
		return nil, err
	}
	var d time.Duration
	if d, lr.hasTTL, err = logical.Duration(data, "ttl"); err != nil {
		return nil, err
	}
	if lr.hasTTL && d > 0 {
		if d < time.Second {
			return nil, logical.InvalidRequest("field \"ttl\": must be at least one second")
		}
		lr.ttl = d
	} else {
		lr.hasTTL = false
	}
	if lr.keyFormat, err = formats(data); err != nil {
		return nil, err
	}
	if lr.excludeCN, _, err = logical.Bool(data, "exclude_cn_from_sans"); err != nil {
		return nil, err
	}
	return lr, nil
}

// maxCSR bounds a CSR in a request.
const maxCSR = 32 << 10

// readCSR reads and verifies the csr field (PEM).
func readCSR(data map[string]any) (*x509.CertificateRequest, error) {
	s, _, err := logical.String(data, "csr")
	if err != nil {
		return nil, err
	}
	return parseCSR(s)
}

// parseCSR decodes a PEM CSR and checks its self-signature.
func parseCSR(s string) (*x509.CertificateRequest, error) {
	if strings.TrimSpace(s) == "" {
		return nil, logical.InvalidRequest("field \"csr\": missing")
	}
	if len(s) > maxCSR {
		return nil, logical.InvalidRequest("field \"csr\": longer than %d bytes", maxCSR)
	}
	blk, _ := pem.Decode([]byte(s))
	if blk == nil {
		return nil, logical.InvalidRequest("field \"csr\": no PEM block found")
	}
	if blk.Type != "CERTIFICATE REQUEST" && blk.Type != "NEW CERTIFICATE REQUEST" {
		return nil, logical.InvalidRequest("field \"csr\": PEM block is %q, want CERTIFICATE REQUEST", truncate(blk.Type))
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, logical.InvalidRequest("field \"csr\": %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, logical.InvalidRequest("field \"csr\": bad signature: %v", err)
	}
	if _, _, ok := publicKeyType(csr.PublicKey); !ok {
		return nil, logical.InvalidRequest("field \"csr\": unsupported public key type %T", csr.PublicKey)
	}
	return csr, nil
}

// issue serves issue/:role: a new key and a certificate for it.
func (b *Backend) issue(ctx context.Context, req *logical.Request, roleName string) (*logical.Response, error) {
	lr, err := parseIssueRequest(req.Data, roleName)
	if err != nil {
		return nil, err
	}
	r, err := b.loadRole(ctx, roleName)
	if err != nil {
		return nil, err
	}
	key, err := issueKey(r, roleName)
	if err != nil {
		return nil, err
	}
	resp, err := b.signLeaf(ctx, r, lr, key.Public())
	if err != nil {
		return nil, err
	}
	if err := addPrivateKey(resp, key, r, lr); err != nil {
		return nil, err
	}
	resp.Warnings = issueFields.unknownWarnings(req.Data)
	return resp, nil
}

// parseIssueRequest reads an issue/:role request (which takes no csr).
// Both the mount's issue and an agent's offline LocalIssuer use it.
func parseIssueRequest(data map[string]any, roleName string) (*leafRequest, error) {
	lr, err := parseLeafRequest(data)
	if err != nil {
		return nil, err
	}
	if _, ok := data["csr"]; ok {
		return nil, logical.InvalidRequest("field \"csr\": not taken by issue; use sign/%s", truncate(roleName))
	}
	return lr, nil
}

// issueKey makes the key of an issued certificate, of the role's type.
func issueKey(r role, roleName string) (crypto.Signer, error) {
	if r.KeyType == keyTypeAny {
		return nil, logical.InvalidRequest("field \"key_type\": role %q has key_type \"any\", which only sign/:role accepts", truncate(roleName))
	}
	return generateKey(r.KeyType, r.KeyBits)
}

// addPrivateKey puts the issued key into an issue response.
func addPrivateKey(resp *logical.Response, key crypto.Signer, r role, lr *leafRequest) error {
	var err error
	if resp.Data["private_key"], err = encodeKey(key, lr.keyFormat); err != nil {
		return err
	}
	resp.Data["private_key_type"] = r.KeyType
	return nil
}

// sign serves sign/:role: a certificate for the CSR's key.
func (b *Backend) sign(ctx context.Context, req *logical.Request, roleName string) (*logical.Response, error) {
	lr, err := parseLeafRequest(req.Data)
	if err != nil {
		return nil, err
	}
	csr, err := readCSR(req.Data)
	if err != nil {
		return nil, err
	}
	r, err := b.loadRole(ctx, roleName)
	if err != nil {
		return nil, err
	}
	kt, bits, _ := publicKeyType(csr.PublicKey)
	switch {
	case r.KeyType != keyTypeAny && kt != r.KeyType:
		return nil, logical.InvalidRequest("field \"csr\": key type %s, role %q requires %s", kt, truncate(roleName), r.KeyType)
	case kt == keyTypeRSA && r.KeyType == keyTypeRSA && bits < r.KeyBits:
		return nil, logical.InvalidRequest("field \"csr\": RSA key of %d bits, role requires at least %d", bits, r.KeyBits)
	case kt == keyTypeRSA && bits < 2048:
		return nil, logical.InvalidRequest("field \"csr\": RSA key of %d bits is too small (minimum 2048)", bits)
	case kt == keyTypeEC && r.KeyType == keyTypeEC && bits != r.KeyBits:
		return nil, logical.InvalidRequest("field \"csr\": EC key on a %d-bit curve, role requires %d", bits, r.KeyBits)
	}
	if r.UseCSRCommonName && csr.Subject.CommonName != "" {
		lr.cn = csr.Subject.CommonName
	}
	if r.UseCSRSANs {
		for _, d := range csr.DNSNames {
			lr.sans.dns = append(lr.sans.dns, strings.ToLower(d))
		}
		lr.sans.ips = append(lr.sans.ips, csr.IPAddresses...)
		if len(lr.sans.dns)+len(lr.sans.ips) > maxNames {
			return nil, logical.InvalidRequest("field \"csr\": at most %d alternative names", maxNames)
		}
	}
	resp, err := b.signLeaf(ctx, r, lr, csr.PublicKey)
	if err != nil {
		return nil, err
	}
	resp.Warnings = issueFields.unknownWarnings(req.Data)
	return resp, nil
}

// signLeaf checks the names and TTL against the role, signs a leaf
// certificate for pub with the mount's CA and stores it unless the role is
// no_store. Its response has everything but the private key.
func (b *Backend) signLeaf(ctx context.Context, r role, lr *leafRequest, pub crypto.PublicKey) (*logical.Response, error) {
	tmpl, err := leafTemplate(r, lr)
	if err != nil {
		return nil, err
	}
	ca, err := b.loadCA(ctx)
	if err != nil {
		return nil, err
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, err
	}
	now := b.clock()
	tmpl.NotBefore = now.Add(-notBeforeSkew)
	tmpl.NotAfter = now.Add(lr.ttl)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		return nil, logical.InvalidRequest("field \"ttl\": the certificate would outlive the CA (which expires %s)", ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign certificate: %w", err)
	}
	serial := formatSerial(tmpl.SerialNumber)
	if !r.NoStore {
		if err := b.store.Put(ctx, prefixCert+storageSerial(serial), der); err != nil {
			return nil, fmt.Errorf("pki: store certificate %s: %w", serial, err)
		}
	}
	resp := &logical.Response{Data: map[string]any{
		"certificate":   pemString("CERTIFICATE", der),
		"issuing_ca":    ca.certPEM,
		"ca_chain":      ca.chainPEM,
		"serial_number": serial,
		"expiration":    tmpl.NotAfter.Unix(),
	}}
	if r.GenerateLease {
		resp.LeaseDuration = int(lr.ttl / time.Second)
	}
	return resp, nil
}

// leafTemplate checks a request against its role and returns the
// certificate template (without serial and validity).
func leafTemplate(r role, lr *leafRequest) (*x509.Certificate, error) {
	maxTTL := time.Duration(r.MaxTTL) * time.Second
	if !lr.hasTTL {
		lr.ttl = time.Duration(r.TTL) * time.Second
		if lr.ttl > maxTTL {
			lr.ttl = maxTTL
		}
	}
	if lr.ttl > maxTTL {
		return nil, logical.InvalidRequest("field \"ttl\": %s is longer than the role's max_ttl %s", lr.ttl, maxTTL)
	}
	if lr.cn == "" && r.RequireCN {
		return nil, logical.InvalidRequest("field \"common_name\": missing, and the role requires one")
	}
	tmpl := &x509.Certificate{
		BasicConstraintsValid: true,
		DNSNames:              nil,
		IPAddresses:           nil,
	}
	var err error
	if tmpl.Subject, err = subject(map[string]any{}, lr.cn); err != nil {
		return nil, err
	}
	tmpl.Subject.Organization, tmpl.Subject.OrganizationalUnit = r.Organization, r.OU
	tmpl.Subject.Country, tmpl.Subject.Locality, tmpl.Subject.Province = r.Country, r.Locality, r.Province
	tmpl.Subject.StreetAddress, tmpl.Subject.PostalCode = r.StreetAddress, r.PostalCode
	if lr.cn != "" {
		if ip := net.ParseIP(lr.cn); ip != nil {
			if !r.AllowIPSANs {
				return nil, logical.InvalidRequest("field \"common_name\": IP address %s not allowed by this role (allow_ip_sans is false)", ip)
			}
			if !lr.excludeCN {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else {
			if err := r.checkName("common_name", lr.cn); err != nil {
				return nil, err
			}
			if !lr.excludeCN && !strings.Contains(lr.cn, "@") {
				tmpl.DNSNames = append(tmpl.DNSNames, strings.ToLower(lr.cn))
			}
		}
	}
	for _, d := range lr.sans.dns {
		if err := r.checkName("alt_names", d); err != nil {
			return nil, err
		}
		if !containsString(tmpl.DNSNames, d) {
			tmpl.DNSNames = append(tmpl.DNSNames, d)
		}
	}
	for _, ip := range lr.sans.ips {
		if !r.AllowIPSANs {
			return nil, logical.InvalidRequest("field \"ip_sans\": IP SAN %s not allowed by this role (allow_ip_sans is false)", ip)
		}
		if !containsIP(tmpl.IPAddresses, ip) {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	for _, u := range r.KeyUsage {
		tmpl.KeyUsage |= keyUsages[strings.ToLower(u)]
	}
	if r.ServerFlag {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if r.ClientFlag {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, u := range r.ExtKeyUsage {
		eku := extKeyUsages[strings.ToLower(u)]
		if !containsEKU(tmpl.ExtKeyUsage, eku) {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, eku)
		}
	}
	return tmpl, nil
}

// checkName checks a DNS name (common_name or an alt_names item) against
// the role: allow_any_name, allow_localhost, allowed_domains with
// allow_bare_domains / allow_subdomains / allow_glob_domains, wildcards and
// enforce_hostnames.
func (r role) checkName(field, name string) error {
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	base := n
	wildcard := strings.HasPrefix(n, "*.")
	if wildcard {
		if !r.AllowWildcardCertificates {
			return logical.InvalidRequest("field %q: wildcard name %q not allowed by this role", field, truncate(name))
		}
		base = n[2:]
	}
	if r.EnforceHostnames && !validHostname(base) {
		return logical.InvalidRequest("field %q: %q is not a valid host name", field, truncate(name))
	}
	if r.AllowAnyName {
		return nil
	}
	if !wildcard && r.AllowLocalhost && (n == "localhost" || n == "localdomain" || n == "localhost.localdomain") {
		return nil
	}
	for _, d := range r.AllowedDomains {
		d = strings.TrimSuffix(d, ".")
		switch {
		case !wildcard && r.AllowBareDomains && n == d:
			return nil
		case r.AllowSubdomains && strings.HasSuffix(n, "."+d) && len(n) > len(d)+1:
			return nil
		case wildcard && r.AllowBareDomains && base == d:
			// *.example.com is a name directly under a bare domain.
			return nil
		case r.AllowGlobDomains && strings.Contains(d, "*"):
			if ok, err := path.Match(d, n); err == nil && ok {
				return nil
			}
		}
	}
	return logical.InvalidRequest("field %q: %q is not allowed by this role's allowed_domains", field, truncate(name))
}

// validHostname checks RFC 1123 host name syntax.
func validHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c >= 'A' && c <= 'Z') {
				return false
			}
		}
	}
	return true
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func containsIP(l []net.IP, ip net.IP) bool {
	for _, x := range l {
		if x.Equal(ip) {
			return true
		}
	}
	return false
}

func containsEKU(l []x509.ExtKeyUsage, u x509.ExtKeyUsage) bool {
	for _, x := range l {
		if x == u {
			return true
		}
	}
	return false
}
