package pki

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
)

// role is a stored role. JSON names are Vault's field names; durations are
// stored as seconds.
type role struct {
	TTL                       int64    `json:"ttl"`
	MaxTTL                    int64    `json:"max_ttl"`
	AllowedDomains            []string `json:"allowed_domains"`
	AllowSubdomains           bool     `json:"allow_subdomains"`
	AllowBareDomains          bool     `json:"allow_bare_domains"`
	AllowGlobDomains          bool     `json:"allow_glob_domains"`
	AllowAnyName              bool     `json:"allow_any_name"`
	AllowLocalhost            bool     `json:"allow_localhost"`
	AllowIPSANs               bool     `json:"allow_ip_sans"`
	AllowWildcardCertificates bool     `json:"allow_wildcard_certificates"`
	EnforceHostnames          bool     `json:"enforce_hostnames"`
	ServerFlag                bool     `json:"server_flag"`
	ClientFlag                bool     `json:"client_flag"`
	KeyType                   string   `json:"key_type"`
	KeyBits                   int      `json:"key_bits"`
	KeyUsage                  []string `json:"key_usage"`
	ExtKeyUsage               []string `json:"ext_key_usage"`
	UseCSRCommonName          bool     `json:"use_csr_common_name"`
	UseCSRSANs                bool     `json:"use_csr_sans"`
	RequireCN                 bool     `json:"require_cn"`
	NoStore                   bool     `json:"no_store"`
	GenerateLease             bool     `json:"generate_lease"`
	Organization              []string `json:"organization"`
	OU                        []string `json:"ou"`
	Country                   []string `json:"country"`
	Locality                  []string `json:"locality"`
	Province                  []string `json:"province"`
	StreetAddress             []string `json:"street_address"`
	PostalCode                []string `json:"postal_code"`
	// AllowOfflineSubCA lets an enrolled agent of the zone obtain a
	// name-constrained sub-CA for this role (SignAgentSubCA) and issue
	// from it while the control plane is unreachable. Default false.
	AllowOfflineSubCA bool `json:"allow_offline_sub_ca"`
	// OfflineSubCATTL is the lifetime of such a sub-CA, in seconds.
	OfflineSubCATTL int64 `json:"offline_sub_ca_ttl"`
}

// defaultRole returns a role with Vault's defaults, except for the shorter
// TTLs edgevault uses.
func defaultRole() role {
	return role{
		TTL: int64(DefaultRoleTTL / time.Second), MaxTTL: int64(DefaultRoleMaxTTL / time.Second),
		AllowLocalhost: true, AllowIPSANs: true, AllowWildcardCertificates: true, EnforceHostnames: true,
		ServerFlag: true, ClientFlag: true, KeyType: keyTypeRSA, KeyBits: 2048,
		KeyUsage:         []string{"DigitalSignature", "KeyAgreement", "KeyEncipherment"},
		UseCSRCommonName: true, UseCSRSANs: true, RequireCN: true,
		OfflineSubCATTL: int64(DefaultOfflineSubCATTL / time.Second),
	}
}

// roleBools maps each boolean request field to the role field it sets.
func (r *role) bools() map[string]*bool {
	return map[string]*bool{
		"allow_subdomains": &r.AllowSubdomains, "allow_bare_domains": &r.AllowBareDomains,
		"allow_glob_domains": &r.AllowGlobDomains, "allow_any_name": &r.AllowAnyName,
		"allow_localhost": &r.AllowLocalhost, "allow_ip_sans": &r.AllowIPSANs,
		"allow_wildcard_certificates": &r.AllowWildcardCertificates, "enforce_hostnames": &r.EnforceHostnames,
		"server_flag": &r.ServerFlag, "client_flag": &r.ClientFlag, "use_csr_common_name": &r.UseCSRCommonName,
		"use_csr_sans": &r.UseCSRSANs, "require_cn": &r.RequireCN, "no_store": &r.NoStore,
		"generate_lease": &r.GenerateLease, "allow_offline_sub_ca": &r.AllowOfflineSubCA,
	}
}

// lists maps each list request field to the role field it sets.
func (r *role) lists() map[string]*[]string {
	return map[string]*[]string{
		"allowed_domains": &r.AllowedDomains, "key_usage": &r.KeyUsage, "ext_key_usage": &r.ExtKeyUsage,
		"organization": &r.Organization, "ou": &r.OU, "country": &r.Country, "locality": &r.Locality,
		"province": &r.Province, "street_address": &r.StreetAddress, "postal_code": &r.PostalCode,
	}
}

// roleFields are the fields a role write understands.
func roleFields() fieldSet {
	var r role
	fs := fieldSet{"ttl", "max_ttl", "key_type", "key_bits", "issuer_ref", "signature_bits", "not_before_duration",
		"offline_sub_ca_ttl"}
	for k := range r.bools() {
		fs = append(fs, k)
	}
	for k := range r.lists() {
		fs = append(fs, k)
	}
	return fs
}

// keyUsages are the key_usage names Vault accepts (case-insensitive).
var keyUsages = map[string]x509.KeyUsage{
	"digitalsignature": x509.KeyUsageDigitalSignature, "contentcommitment": x509.KeyUsageContentCommitment,
	"keyencipherment": x509.KeyUsageKeyEncipherment, "dataencipherment": x509.KeyUsageDataEncipherment,
	"keyagreement": x509.KeyUsageKeyAgreement, "certsign": x509.KeyUsageCertSign, "crlsign": x509.KeyUsageCRLSign,
	"encipheronly": x509.KeyUsageEncipherOnly, "decipheronly": x509.KeyUsageDecipherOnly,
}

// extKeyUsages are the ext_key_usage names Vault accepts (case-insensitive).
var extKeyUsages = map[string]x509.ExtKeyUsage{
	"any": x509.ExtKeyUsageAny, "serverauth": x509.ExtKeyUsageServerAuth, "clientauth": x509.ExtKeyUsageClientAuth,
	"codesigning": x509.ExtKeyUsageCodeSigning, "emailprotection": x509.ExtKeyUsageEmailProtection,
	"ipsecendsystem": x509.ExtKeyUsageIPSECEndSystem, "ipsectunnel": x509.ExtKeyUsageIPSECTunnel,
	"ipsecuser": x509.ExtKeyUsageIPSECUser, "timestamping": x509.ExtKeyUsageTimeStamping,
	"ocspsigning": x509.ExtKeyUsageOCSPSigning, "microsoftservergatedcrypto": x509.ExtKeyUsageMicrosoftServerGatedCrypto,
	"netscapeservergatedcrypto":      x509.ExtKeyUsageNetscapeServerGatedCrypto,
	"microsoftcommercialcodesigning": x509.ExtKeyUsageMicrosoftCommercialCodeSigning,
	"microsoftkernelcodesigning":     x509.ExtKeyUsageMicrosoftKernelCodeSigning,
}

// maxRoleItems bounds each list in a role.
const maxRoleItems = 256

// parseRole reads a role write. Like Vault's role create/update, fields the
// request leaves out take their defaults (a write replaces the role).
func parseRole(data map[string]any) (role, error) {
	r := defaultRole()
	for name, p := range r.bools() {
		v, ok, err := logical.Bool(data, name)
		if err != nil {
			return r, err
		}
		if ok {
			*p = v
		}
	}
	for name, p := range r.lists() {
		v, ok, err := logical.Strings(data, name)
		if err != nil {
			return r, err
		}
		if len(v) > maxRoleItems {
			return r, logical.InvalidRequest("field %q: at most %d items", name, maxRoleItems)
		}
		if ok {
			*p = v
		}
	}
	for i, d := range r.AllowedDomains {
		if len(d) > maxNameLen {
			return r, logical.InvalidRequest("field \"allowed_domains\": item %d is longer than %d bytes", i, maxNameLen)
		}
		r.AllowedDomains[i] = strings.ToLower(d)
	}
	for _, u := range r.KeyUsage {
		if _, ok := keyUsages[strings.ToLower(u)]; !ok {
			return r, logical.InvalidRequest("field \"key_usage\": unknown key usage %q", truncate(u))
		}
	}
	for _, u := range r.ExtKeyUsage {
		if _, ok := extKeyUsages[strings.ToLower(u)]; !ok {
			return r, logical.InvalidRequest("field \"ext_key_usage\": unknown extended key usage %q", truncate(u))
		}
	}
	ttl, err := readTTL(data, "ttl", DefaultRoleTTL)
	if err != nil {
		return r, err
	}
	maxTTL, err := readTTL(data, "max_ttl", DefaultRoleMaxTTL)
	if err != nil {
		return r, err
	}
	if _, set, _ := logical.Duration(data, "max_ttl"); set && maxTTL > 0 {
		if _, ttlSet, _ := logical.Duration(data, "ttl"); !ttlSet && ttl > maxTTL {
			ttl = maxTTL
		}
	}
	if ttl > maxTTL {
		return r, logical.InvalidRequest("field \"ttl\": %s is longer than max_ttl %s", ttl, maxTTL)
	}
	r.TTL, r.MaxTTL = int64(ttl/time.Second), int64(maxTTL/time.Second)
	kt, ok, err := logical.String(data, "key_type")
	if err != nil {
		return r, err
	}
	if !ok || kt == "" {
		kt = keyTypeRSA
	}
	bits, _, err := logical.Int(data, "key_bits")
	if err != nil {
		return r, err
	}
	if r.KeyType, r.KeyBits, err = normalizeKey(kt, bits, true); err != nil {
		return r, err
	}
	if err := r.parseOfflineSubCA(data); err != nil {
		return r, err
	}
	return r, nil
}

// data returns the role as a response's data, durations in seconds.
func (r role) data() map[string]any {
	raw, _ := json.Marshal(r)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	for k, v := range m {
		if v == nil {
			m[k] = []string{}
		}
	}
	return m
}

// maxRoleName bounds a role name.
const maxRoleName = 128

// checkRoleName validates a role name taken from the path.
func checkRoleName(name string) error {
	switch {
	case name == "":
		return logical.InvalidRequest("missing role name")
	case len(name) > maxRoleName:
		return logical.InvalidRequest("role name is longer than %d bytes", maxRoleName)
	case strings.ContainsAny(name, "/\x00"):
		return logical.InvalidRequest("role name must not contain \"/\" or NUL")
	case name == "." || name == "..":
		return logical.InvalidRequest("role name must not be %q", name)
	}
	return nil
}

// loadRole reads a role; a missing role is an invalid request naming it,
// as Vault answers for issue/sign.
func (b *Backend) loadRole(ctx context.Context, name string) (role, error) {
	if err := checkRoleName(name); err != nil {
		return role{}, err
	}
	raw, err := b.store.Get(ctx, prefixRole+name)
	if isNotFound(err) {
		return role{}, logical.InvalidRequest("unknown role: %s", truncate(name))
	}
	if err != nil {
		return role{}, fmt.Errorf("pki: read role %q: %w", name, err)
	}
	r := role{}
	if err := json.Unmarshal(raw, &r); err != nil {
		return role{}, fmt.Errorf("pki: stored role %q: %w", name, err)
	}
	return r, nil
}

// handleRole serves roles/:name: read, create/update, delete.
func (b *Backend) handleRole(ctx context.Context, req *logical.Request, name string) (*logical.Response, error) {
	if err := checkRoleName(name); err != nil {
		return nil, err
	}
	switch req.Operation {
	case logical.ReadOperation:
		raw, err := b.store.Get(ctx, prefixRole+name)
		if isNotFound(err) {
			return nil, fmt.Errorf("%w: no role named %q", logical.ErrNotFound, truncate(name))
		}
		if err != nil {
			return nil, fmt.Errorf("pki: read role %q: %w", name, err)
		}
		var r role
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("pki: stored role %q: %w", name, err)
		}
		return &logical.Response{Data: r.data()}, nil
	case logical.CreateOperation, logical.UpdateOperation:
		r, err := parseRole(req.Data)
		if err != nil {
			return nil, err
		}
		raw, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("pki: encode role: %w", err)
		}
		if err := b.store.Put(ctx, prefixRole+name, raw); err != nil {
			return nil, fmt.Errorf("pki: store role %q: %w", name, err)
		}
		return &logical.Response{Data: r.data(), Warnings: roleFields().unknownWarnings(req.Data)}, nil
	case logical.DeleteOperation:
		if err := b.store.Delete(ctx, prefixRole+name); err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("pki: delete role %q: %w", name, err)
		}
		return nil, nil
	}
	return nil, unsupported(req)
}

// listRoles serves LIST roles.
func (b *Backend) listRoles(ctx context.Context) (*logical.Response, error) {
	keys, err := b.store.List(ctx, prefixRole)
	if err != nil {
		return nil, fmt.Errorf("pki: list roles: %w", err)
	}
	return listResponse(keys)
}

// listResponse is Vault's LIST answer: 404 when nothing is listed.
func listResponse(keys []string) (*logical.Response, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: nothing to list", logical.ErrNotFound)
	}
	return &logical.Response{Data: map[string]any{"keys": keys}}, nil
}
