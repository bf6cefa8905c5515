package syncproto

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/edgevault/edgevault/internal/zone"
)

// SPIFFEAuthorizer returns an AuthorizeFunc that reads the agent's identity
// from the leaf of its verified client certificate chain: exactly one URI
// SAN of the form spiffe://<trustDomain>/zone/<zone>/agent/<id>. The TLS
// listener must have verified the chain (tls.RequireAndVerifyClientCert);
// an unverified certificate is refused.
func SPIFFEAuthorizer(trustDomain string) AuthorizeFunc {
	return func(r *http.Request) (string, string, error) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			return "", "", fmt.Errorf("%w: no verified client certificate", ErrUnauthorized)
		}
		leaf := r.TLS.VerifiedChains[0][0]
		if len(leaf.URIs) != 1 {
			return "", "", fmt.Errorf("%w: certificate %q has %d URI SANs, want one SPIFFE ID", ErrUnauthorized, leaf.Subject.CommonName, len(leaf.URIs))
		}
		u := leaf.URIs[0]
		if u.Scheme != "spiffe" || u.Host != trustDomain {
			return "", "", fmt.Errorf("%w: SPIFFE ID %q is not in trust domain %q", ErrUnauthorized, u.String(), trustDomain)
		}
		parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
		if len(parts) != 4 || parts[0] != "zone" || parts[2] != "agent" || parts[3] == "" {
			return "", "", fmt.Errorf("%w: SPIFFE ID %q is not /zone/<zone>/agent/<id>", ErrUnauthorized, u.String())
		}
		if err := zone.ValidateName(parts[1]); err != nil {
			return "", "", fmt.Errorf("%w: SPIFFE ID %q: %w", ErrUnauthorized, u.String(), err)
		}
		return parts[3], parts[1], nil
	}
}
