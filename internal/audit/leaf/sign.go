package leaf

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// signerKey is the top-level key the server adds to a signed entry.
const (
	signerKey    = "signer"
	signerPrefix = signerKey + "."

	fieldSignerID  = "signer.id"
	fieldSignerKey = "signer.public_key"
	fieldSignerSig = "signer.signature"
)

// SignerInfo identifies who signed an entry and carries the signature.
type SignerInfo struct {
	// ID is the signer's identity, e.g. a SPIFFE ID.
	ID string `json:"id"`
	// PublicKey is the signer's public key, PKIX DER (Ed25519 or ECDSA P-256).
	PublicKey []byte `json:"public_key"`
	// Signature is over the leaf data of the entry without the signer.* fields.
	Signature []byte `json:"signature"`
}

// SignedPart returns the bytes a signer signed: the leaf encoding of all
// fields of leaf whose names do not start with "signer.".
func SignedPart(leaf []byte) ([]byte, error) {
	ds, err := ParseLeaf(leaf)
	if err != nil {
		return nil, err
	}
	return appendLeaf(nil, withoutSigner(ds)), nil
}

func withoutSigner(ds []NamedDigest) []NamedDigest {
	out := make([]NamedDigest, 0, len(ds))
	for _, d := range ds {
		if !isSignerField(d.Name) {
			out = append(out, d)
		}
	}
	return out
}

// Sign signs leafData (the signer's own [Commit] output, which must not
// contain signer.* fields) with key: Ed25519 over the bytes, or ECDSA P-256
// (ASN.1 DER signature) over their SHA-256. Other key types are refused.
func Sign(leafData []byte, key crypto.Signer) ([]byte, error) {
	ds, err := ParseLeaf(leafData)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	for _, d := range ds {
		if isSignerField(d.Name) {
			return nil, fmt.Errorf("sign: %w: entry already has field %q; signer.* names are reserved", ErrMalformed, d.Name)
		}
	}
	switch pub := key.Public().(type) {
	case ed25519.PublicKey:
		return key.Sign(rand.Reader, leafData, crypto.Hash(0))
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("sign: ECDSA key on %s, only P-256 is supported", pub.Curve.Params().Name)
		}
		h := sha256.Sum256(leafData)
		return key.Sign(rand.Reader, h[:], crypto.SHA256)
	default:
		return nil, fmt.Errorf("sign: unsupported key type %T (want Ed25519 or ECDSA P-256)", pub)
	}
}

// VerifySignature checks sig over signedPart with a PKIX DER public key
// (Ed25519, or ECDSA P-256 with an ASN.1 signature over SHA-256). A key
// that does not parse is ErrMalformed; a signature that does not verify is
// ErrBadSignature.
func VerifySignature(signedPart, publicKeyDER, sig []byte) error {
	k, err := x509.ParsePKIXPublicKey(publicKeyDER)
	if err != nil {
		return fmt.Errorf("%w: signer public key: %v", ErrMalformed, err)
	}
	switch pub := k.(type) {
	case ed25519.PublicKey:
		if !ed25519.Verify(pub, signedPart, sig) {
			return fmt.Errorf("%w: Ed25519 signature does not verify with the signer's key", ErrBadSignature)
		}
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return fmt.Errorf("%w: signer key is ECDSA on %s, only P-256 is supported", ErrMalformed, pub.Curve.Params().Name)
		}
		h := sha256.Sum256(signedPart)
		if !ecdsa.VerifyASN1(pub, h[:], sig) {
			return fmt.Errorf("%w: ECDSA P-256 signature does not verify with the signer's key", ErrBadSignature)
		}
	default:
		return fmt.Errorf("%w: unsupported signer key type %T (want Ed25519 or ECDSA P-256)", ErrMalformed, pub)
	}
	return nil
}

// AttachSigner is the server side of a signed entry: given the entry line
// and seed the signer used and its signature, it checks the signature over
// Commit(Fields(line), seed) and returns the line with a top-level
// "signer" object {"id","public_key","signature"} added before the closing
// brace. The line must not already have a "signer" key or signer.* fields.
func AttachSigner(line, seed []byte, s SignerInfo) ([]byte, error) {
	fields, err := Fields(line)
	if err != nil {
		return nil, fmt.Errorf("attach signer: %w", err)
	}
	for _, f := range fields {
		if f.Name == signerKey || isSignerField(f.Name) {
			return nil, fmt.Errorf("attach signer: %w: entry already has field %q", ErrMalformed, f.Name)
		}
	}
	if s.ID == "" {
		return nil, fmt.Errorf("attach signer: %w: empty signer id", ErrMalformed)
	}
	leafData, err := Commit(fields, seed)
	if err != nil {
		return nil, fmt.Errorf("attach signer: %w", err)
	}
	if err := VerifySignature(leafData, s.PublicKey, s.Signature); err != nil {
		return nil, fmt.Errorf("attach signer %q: %w", s.ID, err)
	}
	id, err := json.Marshal(s.ID)
	if err != nil {
		return nil, fmt.Errorf("attach signer: %w: id: %v", ErrMalformed, err)
	}
	trimmed := bytes.TrimRight(line, " \t\r\n")
	end := len(trimmed) - 1 // the closing brace: Fields accepted the line
	var out bytes.Buffer
	out.Grow(len(line) + 64 + len(id) + 2*base64.StdEncoding.EncodedLen(len(s.PublicKey)+len(s.Signature)))
	body := bytes.TrimRight(trimmed[:end], " \t\r\n")
	out.Write(body)
	if len(fields) > 0 || !bytes.HasSuffix(body, []byte("{")) {
		out.WriteByte(',')
	}
	out.WriteString(`"signer":{"id":`)
	out.Write(id)
	out.WriteString(`,"public_key":"`)
	out.WriteString(base64.StdEncoding.EncodeToString(s.PublicKey))
	out.WriteString(`","signature":"`)
	out.WriteString(base64.StdEncoding.EncodeToString(s.Signature))
	out.WriteString(`"}}`)
	out.Write(line[len(trimmed):]) // keep the line's trailing newline, if any
	return out.Bytes(), nil
}

// signerFrom extracts and checks the signer of a signed entry from its
// disclosed fields (values are raw JSON).
func signerFrom(values map[string][]byte) (*SignerInfo, error) {
	var s SignerInfo
	for _, m := range []struct {
		name string
		dst  any
	}{{fieldSignerID, &s.ID}, {fieldSignerKey, &s.PublicKey}, {fieldSignerSig, &s.Signature}} {
		v, ok := values[m.name]
		if !ok {
			return nil, fmt.Errorf("%w: signed entry: field %s is not disclosed", ErrMalformed, m.name)
		}
		if err := json.Unmarshal(v, m.dst); err != nil {
			return nil, fmt.Errorf("%w: field %s: %v", ErrMalformed, m.name, err)
		}
	}
	if s.ID == "" {
		return nil, fmt.Errorf("%w: field %s is empty", ErrMalformed, fieldSignerID)
	}
	return &s, nil
}
