package pki

import (
	"crypto/x509/pkix"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
)

// fieldSet is the set of request fields an endpoint understands.
type fieldSet []string

// unknownWarnings returns, like Vault, one warning naming the fields of data
// the endpoint ignores, or nil.
func (fs fieldSet) unknownWarnings(data map[string]any) []string {
	var unknown []string
	for k := range data {
		if !slices.Contains(fs, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return []string{"Endpoint ignored these unrecognized parameters: [" + strings.Join(unknown, " ") + "]"}
}

// subjectFields are the subject fields that CA generation and roles take.
var subjectFields = fieldSet{"organization", "ou", "country", "locality", "province", "street_address", "postal_code"}

// subject reads the subject fields of data into a pkix.Name with commonName.
func subject(data map[string]any, commonName string) (pkix.Name, error) {
	n := pkix.Name{CommonName: commonName}
	targets := []*[]string{&n.Organization, &n.OrganizationalUnit, &n.Country, &n.Locality, &n.Province, &n.StreetAddress, &n.PostalCode}
	for i, f := range subjectFields {
		v, _, err := logical.Strings(data, f)
		if err != nil {
			return n, err
		}
		*targets[i] = v
	}
	return n, nil
}

// maxNameLen bounds a common name or alternative name (DNS names are at
// most 253 bytes; we leave room for e-mail-like names).
const maxNameLen = 512

// maxNames bounds the number of alternative names in one request.
const maxNames = 100

// sans holds the subject alternative names of a request.
type sans struct {
	dns []string
	ips []net.IP
}

// readSANs reads alt_names and ip_sans. An alt_names item that parses as an
// IP address is treated as an IP SAN, as Vault does.
func readSANs(data map[string]any) (sans, error) {
	var s sans
	alt, _, err := logical.Strings(data, "alt_names")
	if err != nil {
		return s, err
	}
	ips, _, err := logical.Strings(data, "ip_sans")
	if err != nil {
		return s, err
	}
	if len(alt)+len(ips) > maxNames {
		return s, logical.InvalidRequest("field \"alt_names\": at most %d alternative names", maxNames)
	}
	for i, a := range alt {
		if len(a) > maxNameLen {
			return s, logical.InvalidRequest("field \"alt_names\": item %d is longer than %d bytes", i, maxNameLen)
		}
		if ip := net.ParseIP(a); ip != nil {
			s.ips = append(s.ips, ip)
			continue
		}
		s.dns = append(s.dns, strings.ToLower(a))
	}
	for i, a := range ips {
		ip := net.ParseIP(a)
		if ip == nil {
			return s, logical.InvalidRequest("field \"ip_sans\": item %d (%q) is not an IP address", i, truncate(a))
		}
		s.ips = append(s.ips, ip)
	}
	return s, nil
}

// readTTL reads the ttl field: absent or empty gives def.
func readTTL(data map[string]any, field string, def time.Duration) (time.Duration, error) {
	d, ok, err := logical.Duration(data, field)
	if err != nil {
		return 0, err
	}
	if !ok || d == 0 {
		return def, nil
	}
	if d < time.Second {
		return 0, logical.InvalidRequest("field %q: must be at least one second", field)
	}
	return d, nil
}

// commonName reads and checks common_name; required makes it mandatory.
func commonName(data map[string]any, required bool) (string, error) {
	cn, _, err := logical.String(data, "common_name")
	if err != nil {
		return "", err
	}
	cn = strings.TrimSpace(cn)
	if cn == "" && required {
		return "", logical.InvalidRequest("field \"common_name\": missing")
	}
	if len(cn) > 64 && net.ParseIP(cn) == nil {
		// RFC 5280 ub-common-name: 64 characters.
		return "", logical.InvalidRequest("field \"common_name\": longer than 64 characters")
	}
	return cn, nil
}

// format reads format (only "pem" and its default are served) and
// private_key_format ("", "der", "pem" or "pkcs8").
func formats(data map[string]any) (keyFormat string, err error) {
	f, _, err := logical.String(data, "format")
	if err != nil {
		return "", err
	}
	if f != "" && f != "pem" && f != "pem_bundle" {
		return "", logical.InvalidRequest("field \"format\": only \"pem\" is supported, got %q", truncate(f))
	}
	kf, _, err := logical.String(data, "private_key_format")
	if err != nil {
		return "", err
	}
	switch kf {
	case "", "der", "pem", "pkcs8":
		return kf, nil
	}
	return "", logical.InvalidRequest("field \"private_key_format\": want \"der\" or \"pkcs8\", got %q", truncate(kf))
}

// refuseSet fails when any of the named fields (which the engine does not
// implement but which change the certificate's meaning) is set.
func refuseSet(data map[string]any, fields ...string) error {
	for _, f := range fields {
		v, ok := data[f]
		if !ok || v == nil {
			continue
		}
		if s, ok := v.(string); ok && s == "" {
			continue
		}
		if l, ok := v.([]any); ok && len(l) == 0 {
			continue
		}
		return logical.InvalidRequest("field %q: not supported by this server", f)
	}
	return nil
}

// truncate shortens user input quoted in an error message.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
