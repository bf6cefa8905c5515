package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// Quote is a TPM2_Quote as the agent reports it.
type Quote struct {
	// Attest is the signed TPMS_ATTEST structure.
	Attest []byte
	// Signature is the TPMT_SIGNATURE over Attest.
	Signature []byte
	// PCRs are the SHA-256 bank values of the quoted PCRs, by index.
	PCRs map[int][]byte
}

// QuoteResult is what VerifyQuote established.
type QuoteResult struct {
	// PCRDigest is the quoted digest of the PCR values, in hex.
	PCRDigest string
	// PCRs are the quoted PCR values, in hex, by index.
	PCRs map[int]string
	// AllowedSet is the index in Policy.AllowedPCRs of the first set the
	// values match, or -1 when the policy allows any values.
	AllowedSet int
}

// Qualifying returns the qualifying data a quote must carry:
// SHA-256(nonce || tlsPublicKeyDER), binding the quote to the server's
// fresh nonce and to the agent's TLS key (PKIX DER) the certificate will be
// issued for.
func Qualifying(nonce, tlsPublicKeyDER []byte) []byte {
	h := sha256.New()
	h.Write(nonce)
	h.Write(tlsPublicKeyDER)
	return h.Sum(nil)
}

// VerifyQuote checks q against the attestation key akPublic (TPMT_PUBLIC
// bytes), the expected qualifying data and the policy p (which must be
// valid): the signature is the AK's, over a TPM-generated quote
// (ErrQuoteSignature); its extra data equals qualifying (ErrNonce); it
// selects exactly p.PCRs in the SHA-256 bank, and q.PCRs reports exactly
// those (ErrPCRSelection); the reported values hash to the quoted digest
// and match one of p.AllowedPCRs, if any (ErrPCRValues). Undecodable input
// gives ErrEvidence, an unacceptable AK ErrAKAttributes.
func VerifyQuote(p Policy, akPublic []byte, q Quote, qualifying []byte) (QuoteResult, error) {
	ak, err := decodePublic(akPublic, "ak_public")
	if err != nil {
		return QuoteResult{}, err
	}
	key, err := akKey(ak, "ak_public")
	if err != nil {
		return QuoteResult{}, err
	}
	if err := verifySignature(key, ak.scheme, q.Attest, q.Signature); err != nil {
		return QuoteResult{}, err
	}
	// Only authenticated bytes are parsed from here on.
	att, err := parseQuoteAttest(q.Attest)
	if err != nil {
		return QuoteResult{}, fmt.Errorf("%w: quote.attest: %v", ErrQuoteSignature, err)
	}
	if !bytes.Equal(att.extraData, qualifying) {
		return QuoteResult{}, fmt.Errorf("%w: quote.attest: qualifying data is not SHA-256(nonce || public_key_der) of this challenge", ErrNonce)
	}
	quoted, err := selectedPCRs(att.selections)
	if err != nil {
		return QuoteResult{}, err
	}
	if !slices.Equal(quoted, p.PCRs) {
		return QuoteResult{}, fmt.Errorf("%w: quote.attest selects SHA-256 PCRs %s, policy pcrs are %s", ErrPCRSelection, pcrList(quoted), pcrList(p.PCRs))
	}
	reported := make([]int, 0, len(q.PCRs))
	for n := range q.PCRs {
		reported = append(reported, n)
	}
	slices.Sort(reported)
	if !slices.Equal(reported, p.PCRs) {
		return QuoteResult{}, fmt.Errorf("%w: quote.pcrs reports PCRs %s, policy pcrs are %s", ErrPCRSelection, pcrList(reported), pcrList(p.PCRs))
	}
	h := sha256.New()
	res := QuoteResult{PCRs: make(map[int]string, len(p.PCRs)), AllowedSet: -1}
	for _, n := range p.PCRs {
		v := q.PCRs[n]
		if len(v) != sha256.Size {
			return QuoteResult{}, fmt.Errorf("%w: quote.pcrs[%d] is %d bytes, want %d (SHA-256 bank)", ErrEvidence, n, len(v), sha256.Size)
		}
		h.Write(v)
		res.PCRs[n] = hex.EncodeToString(v)
	}
	if digest := h.Sum(nil); !bytes.Equal(digest, att.pcrDigest) {
		return QuoteResult{}, fmt.Errorf("%w: quote.pcrs values do not hash to the quoted PCR digest %x", ErrPCRValues, att.pcrDigest)
	}
	res.PCRDigest = hex.EncodeToString(att.pcrDigest)
	if len(p.AllowedPCRs) == 0 {
		return res, nil
	}
	var misses []string
	for i, set := range p.AllowedPCRs {
		if bad := mismatch(set, res.PCRs); len(bad) > 0 {
			misses = append(misses, fmt.Sprintf("set %d differs at PCR %s", i, strings.Join(bad, ",")))
			continue
		}
		res.AllowedSet = i
		return res, nil
	}
	return QuoteResult{}, fmt.Errorf("%w: quote.pcrs match none of allowed_pcr_sets (%s)", ErrPCRValues, strings.Join(misses, "; "))
}

// mismatch returns the PCR keys of set whose values differ from got,
// sorted numerically.
func mismatch(set map[string]string, got map[int]string) []string {
	var bad []int
	for k, want := range set {
		n, err := parsePCRKey(k)
		if err != nil || got[n] != want {
			bad = append(bad, n)
		}
	}
	slices.Sort(bad)
	out := make([]string, len(bad))
	for i, n := range bad {
		out[i] = fmt.Sprint(n)
	}
	return out
}

// verifySignature checks sigBytes, a TPMT_SIGNATURE, over attest with key,
// using scheme (the AK's) and SHA-256.
func verifySignature(key crypto.PublicKey, scheme uint16, attest, sigBytes []byte) error {
	if len(attest) == 0 || len(attest) > maxAttestBytes {
		return fmt.Errorf("%w: quote.attest is %d bytes, want 1..%d", ErrEvidence, len(attest), maxAttestBytes)
	}
	if len(sigBytes) == 0 || len(sigBytes) > maxSignatureBytes {
		return fmt.Errorf("%w: quote.signature is %d bytes, want 1..%d", ErrEvidence, len(sigBytes), maxSignatureBytes)
	}
	sig, err := parseSignature(sigBytes)
	if err != nil {
		return fmt.Errorf("%w: quote.signature: not a TPMT_SIGNATURE: %v", ErrEvidence, err)
	}
	if sig.alg != scheme {
		return fmt.Errorf("%w: quote.signature algorithm %#04x, the AK signs with %#04x", ErrQuoteSignature, sig.alg, scheme)
	}
	if sig.hash != algSHA256 {
		return fmt.Errorf("%w: quote.signature hash %#04x, want SHA-256", ErrQuoteSignature, sig.hash)
	}
	digest := sha256.Sum256(attest)
	ok := false
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.Verify(k, digest[:], new(big.Int).SetBytes(sig.r), new(big.Int).SetBytes(sig.s))
	case *rsa.PublicKey:
		if scheme == algRSAPSS {
			ok = rsa.VerifyPSS(k, crypto.SHA256, digest[:], sig.sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil
		} else {
			ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig.sig) == nil
		}
	}
	if !ok {
		return fmt.Errorf("%w: quote.signature is not the AK's signature over quote.attest", ErrQuoteSignature)
	}
	return nil
}

// selectedPCRs returns the PCR indexes a quote's selection covers. Only
// the SHA-256 bank may be selected; empty selections of other banks are
// tolerated.
func selectedPCRs(sels []pcrSelection) ([]int, error) {
	var out []int
	for _, s := range sels {
		var idx []int
		for i, b := range s.bitmap {
			for bit := range 8 {
				if b&(1<<bit) != 0 {
					idx = append(idx, 8*i+bit)
				}
			}
		}
		if len(idx) == 0 {
			continue
		}
		if s.hash != algSHA256 {
			return nil, fmt.Errorf("%w: quote.attest selects PCRs %s of hash bank %#04x, want SHA-256 only", ErrPCRSelection, pcrList(idx), s.hash)
		}
		if out != nil {
			return nil, fmt.Errorf("%w: quote.attest selects the SHA-256 bank twice", ErrPCRSelection)
		}
		out = idx
	}
	return out, nil
}

// pcrList formats PCR indexes for messages: "[0 1 7]".
func pcrList(pcrs []int) string {
	if len(pcrs) > 32 {
		return fmt.Sprint(pcrs[:32]) + "..."
	}
	return fmt.Sprint(pcrs)
}
