package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
)

// Storage keys; see the package doc.
const (
	keyCA      = "ca"
	keyPending = "pending"
	keyCRL     = "crl"
	prefixRole = "roles/"
	prefixCert = "certs/"
	prefixRev  = "revoked/"
)

// caRecord is the stored CA: the issuing certificate, its key and the
// certificates above it.
type caRecord struct {
	IssuerID string   `json:"issuer_id"`
	KeyID    string   `json:"key_id"`
	Cert     []byte   `json:"cert"`           // DER
	Key      []byte   `json:"key"`            // PKCS#8 DER
	Parents  [][]byte `json:"parents"`        // DER, issuer first, up to the root
	Name     string   `json:"name,omitempty"` // issuer_name
	KeyName  string   `json:"key_name,omitempty"`
}

// pendingRecord is an intermediate key waiting for its signed certificate.
type pendingRecord struct {
	KeyID string `json:"key_id"`
	Key   []byte `json:"key"` // PKCS#8 DER
}

// caState is a parsed caRecord, cached by its stored bytes.
type caState struct {
	raw      []byte
	rec      caRecord
	cert     *x509.Certificate
	key      crypto.Signer
	certPEM  string
	chainPEM []string // the CA then its parents, as ca_chain
}

// loadCA returns the mount's CA, or ErrNoCA. The parsed form is reused while
// the stored bytes are unchanged, so a CA written by another writer to the
// same storage (replication) is picked up on the next request.
func (b *Backend) loadCA(ctx context.Context) (*caState, error) {
	raw, err := b.store.Get(ctx, keyCA)
	if isNotFound(err) {
		return nil, ErrNoCA
	}
	if err != nil {
		return nil, fmt.Errorf("pki: read CA: %w", err)
	}
	if c := b.ca.Load(); c != nil && bytes.Equal(c.raw, raw) {
		return c, nil
	}
	st, err := parseCARecord(raw)
	if err != nil {
		return nil, err
	}
	b.ca.Store(st)
	return st, nil
}

// parseCARecord decodes and checks a stored CA record.
func parseCARecord(raw []byte) (*caState, error) {
	st := &caState{raw: raw}
	if err := json.Unmarshal(raw, &st.rec); err != nil {
		return nil, fmt.Errorf("pki: stored CA: %w", err)
	}
	cert, err := x509.ParseCertificate(st.rec.Cert)
	if err != nil {
		return nil, fmt.Errorf("pki: stored CA certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(st.rec.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: stored CA key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: stored CA key: %T cannot sign", k)
	}
	st.cert, st.key = cert, signer
	st.certPEM = pemString("CERTIFICATE", cert.Raw)
	st.chainPEM = []string{st.certPEM}
	for i, p := range st.rec.Parents {
		if _, err := x509.ParseCertificate(p); err != nil {
			return nil, fmt.Errorf("pki: stored CA parent %d: %w", i, err)
		}
		st.chainPEM = append(st.chainPEM, pemString("CERTIFICATE", p))
	}
	return st, nil
}

// storeCA writes rec as the mount's CA, dropping any pending intermediate
// key and the cached CRL in the same transaction. The caller holds caMu.
func (b *Backend) storeCA(ctx context.Context, rec caRecord) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("pki: encode CA: %w", err)
	}
	if _, err := parseCARecord(raw); err != nil {
		return err
	}
	return b.store.Txn(ctx, []storage.Op{
		{Kind: storage.OpPut, Key: keyCA, Value: raw},
		{Kind: storage.OpDelete, Key: keyPending},
		{Kind: storage.OpDelete, Key: keyCRL},
	})
}

// haveCA reports whether a CA is stored. The caller holds caMu.
func (b *Backend) haveCA(ctx context.Context) (bool, error) {
	_, err := b.store.Get(ctx, keyCA)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pki: read CA: %w", err)
	}
	return true, nil
}

// caFields are the request fields of root and intermediate generation.
var caFields = append(fieldSet{"common_name", "alt_names", "ip_sans", "ttl", "key_type", "key_bits",
	"issuer_name", "key_name", "max_path_length", "exclude_cn_from_sans", "format", "private_key_format",
	"permitted_dns_domains", "signature_bits", "add_basic_constraints"}, subjectFields...)

// caRequest is a parsed root or intermediate generation request.
type caRequest struct {
	tmpl      *x509.Certificate
	keyType   string
	keyBits   int
	ttl       time.Duration
	name      string
	keyName   string
	keyFormat string
}

// parseCARequest reads a root/intermediate generation request.
func parseCARequest(data map[string]any) (*caRequest, error) {
	cn, err := commonName(data, true)
	if err != nil {
		return nil, err
	}
	kt, _, err := logical.String(data, "key_type")
	if err != nil {
		return nil, err
	}
	if kt == "" {
		kt = keyTypeRSA // Vault's default
	}
	bits, _, err := logical.Int(data, "key_bits")
	if err != nil {
		return nil, err
	}
	r := &caRequest{}
	if r.keyType, r.keyBits, err = normalizeKey(kt, bits, false); err != nil {
		return nil, err
	}
	if r.ttl, err = readTTL(data, "ttl", DefaultCATTL); err != nil {
		return nil, err
	}
	if r.keyFormat, err = formats(data); err != nil {
		return nil, err
	}
	if r.name, _, err = logical.String(data, "issuer_name"); err != nil {
		return nil, err
	}
	if r.keyName, _, err = logical.String(data, "key_name"); err != nil {
		return nil, err
	}
	name, err := subject(data, cn)
	if err != nil {
		return nil, err
	}
	s, err := readSANs(data)
	if err != nil {
		return nil, err
	}
	excl, _, err := logical.Bool(data, "exclude_cn_from_sans")
	if err != nil {
		return nil, err
	}
	mpl, hasMPL, err := logical.Int(data, "max_path_length")
	if err != nil {
		return nil, err
	}
	if !hasMPL {
		mpl = -1
	}
	if mpl < -1 || mpl > 32 {
		return nil, logical.InvalidRequest("field \"max_path_length\": want -1 (unlimited) to 32, got %d", mpl)
	}
	permitted, _, err := logical.Strings(data, "permitted_dns_domains")
	if err != nil {
		return nil, err
	}
	r.tmpl = &x509.Certificate{
		Subject:               name,
		DNSNames:              s.dns,
		IPAddresses:           s.ips,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            int(mpl),
		MaxPathLenZero:        mpl == 0,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		PermittedDNSDomains:   permitted,
	}
	if !excl && cn != "" && !isIPOrEmail(cn) {
		r.tmpl.DNSNames = append([]string{strings.ToLower(cn)}, r.tmpl.DNSNames...)
	}
	return r, nil
}

// isIPOrEmail reports names that do not go into DNS SANs.
func isIPOrEmail(s string) bool {
	return strings.Contains(s, "@") || strings.Contains(s, " ") || net.ParseIP(s) != nil
}

// generateRoot serves root/generate/internal (and /exported, which also
// returns the key): a self-signed CA certificate and key.
func (b *Backend) generateRoot(ctx context.Context, req *logical.Request, exported bool) (*logical.Response, error) {
	r, err := parseCARequest(req.Data)
	if err != nil {
		return nil, err
	}
	b.caMu.Lock()
	defer b.caMu.Unlock()
	if ok, err := b.haveCA(ctx); err != nil {
		return nil, err
	} else if ok {
		return nil, ErrCAExists
	}
	key, err := generateKey(r.keyType, r.keyBits)
	if err != nil {
		return nil, err
	}
	if r.tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, err
	}
	now := b.clock()
	r.tmpl.NotBefore = now.Add(-notBeforeSkew)
	r.tmpl.NotAfter = now.Add(r.ttl)
	der, err := x509.CreateCertificate(rand.Reader, r.tmpl, r.tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create root certificate: %w", err)
	}
	rec, err := newCARecord(der, key, nil, r.name, r.keyName)
	if err != nil {
		return nil, err
	}
	if err := b.storeCA(ctx, rec); err != nil {
		return nil, err
	}
	b.log.Info("pki: root CA generated", "mount", req.MountPoint, "issuer_id", rec.IssuerID, "key_type", r.keyType)
	certPEM := pemString("CERTIFICATE", der)
	data := map[string]any{
		"certificate":   certPEM,
		"issuing_ca":    certPEM,
		"serial_number": formatSerial(r.tmpl.SerialNumber),
		"expiration":    r.tmpl.NotAfter.Unix(),
		"issuer_id":     rec.IssuerID,
		"issuer_name":   rec.Name,
		"key_id":        rec.KeyID,
		"key_name":      rec.KeyName,
	}
	if exported {
		if data["private_key"], err = encodeKey(key, r.keyFormat); err != nil {
			return nil, err
		}
		data["private_key_type"] = r.keyType
	}
	return &logical.Response{Data: data, Warnings: caFields.unknownWarnings(req.Data)}, nil
}

// newCARecord builds a CA record with fresh issuer and key ids.
func newCARecord(der []byte, key crypto.Signer, parents [][]byte, name, keyName string) (caRecord, error) {
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return caRecord{}, fmt.Errorf("pki: encode CA key: %w", err)
	}
	iid, err := newID()
	if err != nil {
		return caRecord{}, err
	}
	kid, err := newID()
	if err != nil {
		return caRecord{}, err
	}
	return caRecord{IssuerID: iid, KeyID: kid, Cert: der, Key: k, Parents: parents, Name: name, KeyName: keyName}, nil
}

// generateIntermediate serves intermediate/generate/internal: a new key,
// kept as pending, and a CSR for it that a parent CA signs.
func (b *Backend) generateIntermediate(ctx context.Context, req *logical.Request, exported bool) (*logical.Response, error) {
	r, err := parseCARequest(req.Data)
	if err != nil {
		return nil, err
	}
	key, err := generateKey(r.keyType, r.keyBits)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: r.tmpl.Subject, DNSNames: r.tmpl.DNSNames, IPAddresses: r.tmpl.IPAddresses,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CSR: %w", err)
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	kid, err := newID()
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(pendingRecord{KeyID: kid, Key: k})
	if err != nil {
		return nil, fmt.Errorf("pki: encode pending key: %w", err)
	}
	b.caMu.Lock()
	defer b.caMu.Unlock()
	if err := b.store.Put(ctx, keyPending, raw); err != nil {
		return nil, fmt.Errorf("pki: store pending key: %w", err)
	}
	data := map[string]any{"csr": pemString("CERTIFICATE REQUEST", csr), "key_id": kid}
	if exported {
		if data["private_key"], err = encodeKey(key, r.keyFormat); err != nil {
			return nil, err
		}
		data["private_key_type"] = r.keyType
	}
	return &logical.Response{Data: data, Warnings: caFields.unknownWarnings(req.Data)}, nil
}

// setSigned serves intermediate/set-signed: the certificate signed for the
// pending key (a PEM bundle: the intermediate first, then optionally its
// parents) becomes the mount's CA.
func (b *Backend) setSigned(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	s, _, err := logical.String(req.Data, "certificate")
	if err != nil {
		return nil, err
	}
	certs, err := parseCertBundle("certificate", s)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	if !leaf.IsCA || !leaf.BasicConstraintsValid {
		return nil, logical.InvalidRequest("field \"certificate\": the first certificate is not a CA certificate")
	}
	for i := 1; i < len(certs); i++ {
		if err := certs[i-1].CheckSignatureFrom(certs[i]); err != nil {
			return nil, logical.InvalidRequest("field \"certificate\": certificate %d is not signed by certificate %d: %v", i-1, i, err)
		}
	}
	b.caMu.Lock()
	defer b.caMu.Unlock()
	if ok, err := b.haveCA(ctx); err != nil {
		return nil, err
	} else if ok {
		return nil, ErrCAExists
	}
	raw, err := b.store.Get(ctx, keyPending)
	if isNotFound(err) {
		return nil, logical.InvalidRequest("field \"certificate\": no pending intermediate key: call intermediate/generate/internal first")
	}
	if err != nil {
		return nil, fmt.Errorf("pki: read pending key: %w", err)
	}
	var p pendingRecord
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("pki: stored pending key: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(p.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: stored pending key: %w", err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: stored pending key: %T cannot sign", k)
	}
	if !publicKeysEqual(key.Public(), leaf.PublicKey) {
		return nil, logical.InvalidRequest("field \"certificate\": the certificate's public key is not the pending intermediate key")
	}
	var parents [][]byte
	for _, c := range certs[1:] {
		parents = append(parents, c.Raw)
	}
	rec, err := newCARecord(leaf.Raw, key, parents, "", "")
	if err != nil {
		return nil, err
	}
	rec.KeyID = p.KeyID
	if err := b.storeCA(ctx, rec); err != nil {
		return nil, err
	}
	b.log.Info("pki: intermediate CA set", "mount", req.MountPoint, "issuer_id", rec.IssuerID)
	return &logical.Response{Data: map[string]any{
		"imported_issuers": []string{rec.IssuerID},
		"imported_keys":    []string{rec.KeyID},
	}}, nil
}

// publicKeysEqual compares two public keys of any supported type.
func publicKeysEqual(a, b any) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// maxBundle bounds a PEM certificate bundle in a request.
const maxBundle = 64 << 10

// parseCertBundle decodes one or more PEM certificates; field names the
// request field in errors.
func parseCertBundle(field, s string) ([]*x509.Certificate, error) {
	if strings.TrimSpace(s) == "" {
		return nil, logical.InvalidRequest("field %q: missing", field)
	}
	if len(s) > maxBundle {
		return nil, logical.InvalidRequest("field %q: longer than %d bytes", field, maxBundle)
	}
	rest := []byte(s)
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, logical.InvalidRequest("field %q: PEM block %d is %q, want CERTIFICATE", field, len(out), truncate(blk.Type))
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, logical.InvalidRequest("field %q: certificate %d: %v", field, len(out), err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, logical.InvalidRequest("field %q: no PEM certificate found", field)
	}
	return out, nil
}

// signIntermediate serves root/sign-intermediate: signs a CSR as a CA
// certificate below this mount's CA.
func (b *Backend) signIntermediate(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	fields := fieldSet{"csr", "common_name", "alt_names", "ip_sans", "ttl", "max_path_length", "format",
		"use_csr_values", "exclude_cn_from_sans", "permitted_dns_domains", "issuer_ref", "signature_bits"}
	fields = append(fields, subjectFields...)
	csr, err := readCSR(req.Data)
	if err != nil {
		return nil, err
	}
	if _, err := formats(req.Data); err != nil {
		return nil, err
	}
	useCSR, _, err := logical.Bool(req.Data, "use_csr_values")
	if err != nil {
		return nil, err
	}
	data := req.Data
	if _, ok := data["common_name"]; !ok || useCSR {
		data = withCN(data, csr.Subject.CommonName)
	}
	r, err := parseCARequest(data)
	if err != nil {
		return nil, err
	}
	if useCSR {
		r.tmpl.Subject = csr.Subject
		r.tmpl.DNSNames = append(r.tmpl.DNSNames, csr.DNSNames...)
		r.tmpl.IPAddresses = append(r.tmpl.IPAddresses, csr.IPAddresses...)
	}
	ca, err := b.loadCA(ctx)
	if err != nil {
		return nil, err
	}
	if r.tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, err
	}
	now := b.clock()
	r.tmpl.NotBefore = now.Add(-notBeforeSkew)
	r.tmpl.NotAfter = now.Add(r.ttl)
	if r.tmpl.NotAfter.After(ca.cert.NotAfter) {
		return nil, logical.InvalidRequest("field \"ttl\": the certificate would outlive the CA (which expires %s)", ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	der, err := x509.CreateCertificate(rand.Reader, r.tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign intermediate: %w", err)
	}
	if err := b.store.Put(ctx, prefixCert+storageSerial(formatSerial(r.tmpl.SerialNumber)), der); err != nil {
		return nil, fmt.Errorf("pki: store certificate: %w", err)
	}
	return &logical.Response{Data: map[string]any{
		"certificate":   pemString("CERTIFICATE", der),
		"issuing_ca":    ca.certPEM,
		"ca_chain":      append([]string{pemString("CERTIFICATE", der)}, ca.chainPEM...),
		"serial_number": formatSerial(r.tmpl.SerialNumber),
		"expiration":    r.tmpl.NotAfter.Unix(),
	}, Warnings: fields.unknownWarnings(req.Data)}, nil
}

// withCN returns a copy of data with common_name set.
func withCN(data map[string]any, cn string) map[string]any {
	out := make(map[string]any, len(data)+1)
	for k, v := range data {
		out[k] = v
	}
	out["common_name"] = cn
	return out
}

// deleteCA serves DELETE root: the CA, its key and any pending key go;
// stored certificates and revocations stay until tidy.
func (b *Backend) deleteCA(ctx context.Context) error {
	b.caMu.Lock()
	defer b.caMu.Unlock()
	err := b.store.Txn(ctx, []storage.Op{
		{Kind: storage.OpDelete, Key: keyCA},
		{Kind: storage.OpDelete, Key: keyPending},
		{Kind: storage.OpDelete, Key: keyCRL},
	})
	if err != nil {
		return fmt.Errorf("pki: delete CA: %w", err)
	}
	b.ca.Store(nil)
	return nil
}

// readCA serves ca (raw DER), ca/pem and ca_chain (raw PEM), and cert/ca and
// cert/ca_chain (JSON {"certificate"}), as Vault does.
func (b *Backend) readCA(ctx context.Context, path string) (*logical.Response, error) {
	ca, err := b.loadCA(ctx)
	if errors.Is(err, ErrNoCA) {
		return nil, fmt.Errorf("%w: %s", logical.ErrNotFound, ErrNoCA.msg)
	}
	if err != nil {
		return nil, err
	}
	out := ca.certPEM
	if path == "ca_chain" || path == "cert/ca_chain" {
		out = strings.Join(ca.chainPEM, "\n")
	}
	resp := &logical.Response{Data: map[string]any{"certificate": out}}
	switch path {
	case "ca": // Vault: the DER certificate itself
		resp.Raw, resp.ContentType = ca.cert.Raw, "application/pkix-cert"
	case "ca/pem", "ca_chain":
		resp.Raw, resp.ContentType = []byte(out), "application/pem-certificate-chain"
	}
	return resp, nil
}
