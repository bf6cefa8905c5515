package attest

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/edgevault/edgevault/internal/attest/jointoken"
	"github.com/edgevault/edgevault/internal/zone"
)

// MaxAgentIDLen is the longest agent ID.
const MaxAgentIDLen = 63

// MaxTrustDomainLen is the longest trust domain (a DNS name).
const MaxTrustDomainLen = 253

// AgentName is what an agent certificate's SPIFFE ID says:
// spiffe://<TrustDomain>/zone/<zone label>/agent/<ID>.
type AgentName struct {
	// TrustDomain is the SPIFFE trust domain, e.g. "edgevault.example".
	TrustDomain string
	// Zone is the zone name; "" is the root zone (label "root" in the ID).
	Zone string
	// ID is the agent ID inside the zone.
	ID string
}

// URI returns the SPIFFE ID.
func (n AgentName) URI() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: n.TrustDomain, Path: zonePath(n.Zone) + "agent/" + n.ID}
}

// String returns the SPIFFE ID as text.
func (n AgentName) String() string { return n.URI().String() }

// zonePath is the path prefix of every SPIFFE ID in zone: /zone/<label>/.
func zonePath(zoneName string) string {
	return "/zone/" + jointoken.ZoneLabel(zoneName) + "/"
}

// ValidateAgentID reports whether id can name an agent: 1 to 63 characters
// of [a-z0-9-], not starting or ending with '-' (a DNS label, as for zone
// names). Errors wrap ErrInvalidAgentID.
func ValidateAgentID(id string) error {
	if err := zone.ValidateName(id); err != nil && id != jointoken.RootLabel {
		// Reuse the zone name rule; its message names the problem.
		return fmt.Errorf("%w: %s", ErrInvalidAgentID, strings.TrimPrefix(err.Error(), zone.ErrInvalidName.Error()+" "))
	}
	return nil
}

// ValidateTrustDomain reports whether td is a usable SPIFFE trust domain:
// lower-case letters, digits, '.', '-' and '_', at most 253 bytes.
func ValidateTrustDomain(td string) error {
	if td == "" || len(td) > MaxTrustDomainLen {
		return fmt.Errorf("%w: TrustDomain must be 1 to %d bytes", ErrInvalidConfig, MaxTrustDomainLen)
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("%w: TrustDomain character %d is %q; only a-z, 0-9, '.', '-' and '_' are allowed", ErrInvalidConfig, i+1, rune(c))
		}
	}
	return nil
}

// ParseAgentName parses an agent SPIFFE ID. Errors wrap ErrCertInvalid.
func ParseAgentName(u *url.URL) (AgentName, error) {
	bad := func(why string) (AgentName, error) {
		return AgentName{}, fmt.Errorf("%w: SPIFFE ID: %s", ErrCertInvalid, why)
	}
	if u == nil || u.Scheme != "spiffe" {
		return bad("scheme is not spiffe")
	}
	if u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return bad("has user info, port, query, fragment or opaque part")
	}
	if ValidateTrustDomain(u.Host) != nil {
		return bad("bad trust domain")
	}
	if u.RawPath != "" {
		return bad("path is percent-encoded")
	}
	parts := strings.Split(u.Path, "/")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "zone" || parts[3] != "agent" {
		return bad("path is not /zone/<zone>/agent/<id>")
	}
	zoneName := jointoken.LabelZone(parts[2])
	if parts[2] == "" || (zoneName != "" && zone.ValidateName(zoneName) != nil) {
		return bad("bad zone label")
	}
	if ValidateAgentID(parts[4]) != nil {
		return bad("bad agent ID")
	}
	return AgentName{TrustDomain: u.Host, Zone: zoneName, ID: parts[4]}, nil
}
