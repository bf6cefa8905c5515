package pki

import "strings"

// Unauthenticated reports whether rel, a path relative to the mount, is one
// Vault serves without a token: the CA certificate and chain, the CRL and
// issued certificates by serial. All of them are public by nature (relying
// parties fetch them); reads only.
func Unauthenticated(rel string) bool {
	switch rel {
	case "ca", "ca/pem", "ca_chain", "crl", "crl/pem":
		return true
	}
	return strings.HasPrefix(rel, "cert/") && len(rel) > len("cert/")
}
