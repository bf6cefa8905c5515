package tpmdev

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// numPCRs is the number of PCRs in a PC-client TPM's bank.
const numPCRs = 24

// sealMagic starts a sealed blob and names its version.
var sealMagic = []byte("EVS1")

// A sealed blob is
//
//	"EVS1" || uint32 PCR mask (big-endian, bit i = PCR i of the SHA-256 bank)
//	       || TPM2B_PUBLIC || TPM2B_PRIVATE
//
// with nothing after. The public and private areas are the sealed object
// as TPM2_Create returned it under the SRK.
type sealedBlob struct {
	pcrs []int
	pub  tpm2.TPM2BPublic
	priv tpm2.TPM2BPrivate
}

func (b sealedBlob) marshal() []byte {
	out := slices.Clone(sealMagic)
	out = binary.BigEndian.AppendUint32(out, pcrMask(b.pcrs))
	out = append(out, tpm2.Marshal(b.pub)...)
	return append(out, tpm2.Marshal(b.priv)...)
}

func parseSealed(blob []byte) (sealedBlob, error) {
	rest, ok := bytes.CutPrefix(blob, sealMagic)
	if !ok {
		return sealedBlob{}, fmt.Errorf("%w: sealed blob does not start with %q", ErrBadBlob, sealMagic)
	}
	if len(rest) < 4 {
		return sealedBlob{}, fmt.Errorf("%w: sealed blob: PCR mask truncated", ErrBadBlob)
	}
	mask := binary.BigEndian.Uint32(rest)
	if mask == 0 || mask>>numPCRs != 0 {
		return sealedBlob{}, fmt.Errorf("%w: sealed blob: PCR mask %#x", ErrBadBlob, mask)
	}
	var pcrs []int
	for i := range numPCRs {
		if mask&(1<<i) != 0 {
			pcrs = append(pcrs, i)
		}
	}
	pub, priv, err := parseKeyPair(rest[4:], "sealed blob")
	if err != nil {
		return sealedBlob{}, err
	}
	p, _ := pub.Contents() // checked by parseKeyPair
	if p.Type != tpm2.TPMAlgKeyedHash || !p.ObjectAttributes.FixedTPM || p.ObjectAttributes.UserWithAuth || len(p.AuthPolicy.Buffer) == 0 {
		return sealedBlob{}, fmt.Errorf("%w: sealed blob: public area is not a policy-bound sealed object", ErrBadBlob)
	}
	return sealedBlob{pcrs: pcrs, pub: pub, priv: priv}, nil
}

// parseKeyPair splits TPM2B_PUBLIC || TPM2B_PRIVATE (nothing after) and
// checks that the public area is a canonical TPMT_PUBLIC.
func parseKeyPair(b []byte, what string) (tpm2.TPM2BPublic, tpm2.TPM2BPrivate, error) {
	pubBytes, rest, err := cut2B(b)
	if err != nil {
		return tpm2.TPM2BPublic{}, tpm2.TPM2BPrivate{}, fmt.Errorf("%w: %s: public area: %v", ErrBadBlob, what, err)
	}
	privBytes, rest, err := cut2B(rest)
	if err != nil {
		return tpm2.TPM2BPublic{}, tpm2.TPM2BPrivate{}, fmt.Errorf("%w: %s: private area: %v", ErrBadBlob, what, err)
	}
	if len(rest) != 0 {
		return tpm2.TPM2BPublic{}, tpm2.TPM2BPrivate{}, fmt.Errorf("%w: %s: %d bytes after the private area", ErrBadBlob, what, len(rest))
	}
	if len(privBytes) == 0 {
		return tpm2.TPM2BPublic{}, tpm2.TPM2BPrivate{}, fmt.Errorf("%w: %s: empty private area", ErrBadBlob, what)
	}
	if _, err := parsePublic(pubBytes); err != nil {
		return tpm2.TPM2BPublic{}, tpm2.TPM2BPrivate{}, fmt.Errorf("%w: %s: public area: %v", ErrBadBlob, what, err)
	}
	return tpm2.BytesAs2B[tpm2.TPMTPublic](pubBytes), tpm2.TPM2BPrivate{Buffer: privBytes}, nil
}

// cut2B splits a TPM2B (uint16 big-endian size, then that many bytes) off b.
func cut2B(b []byte) (body, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("size truncated")
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b)-2 < n {
		return nil, nil, fmt.Errorf("declares %d bytes, %d remain", n, len(b)-2)
	}
	return b[2 : 2+n], b[2+n:], nil
}

// parsePublic parses a TPMT_PUBLIC, refusing trailing or non-canonical
// bytes (it must marshal back to exactly b).
func parsePublic(b []byte) (p *tpm2.TPMTPublic, err error) {
	defer func() {
		if r := recover(); r != nil { // defensive: the decoder is reflection-based
			p, err = nil, fmt.Errorf("TPMT_PUBLIC: decoder failed: %v", r)
		}
	}()
	p, err = tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, fmt.Errorf("TPMT_PUBLIC: %w", err)
	}
	if !bytes.Equal(tpm2.Marshal(p), b) {
		return nil, fmt.Errorf("TPMT_PUBLIC: trailing or non-canonical bytes")
	}
	return p, nil
}

// checkPCRs validates a PCR selection and returns it sorted.
func checkPCRs(pcrs []int) ([]int, error) {
	if len(pcrs) == 0 {
		return nil, fmt.Errorf("%w: no PCRs", ErrInvalidPCR)
	}
	s := slices.Clone(pcrs)
	slices.Sort(s)
	for i, p := range s {
		if p < 0 || p >= numPCRs {
			return nil, fmt.Errorf("%w: PCR %d is outside 0..%d", ErrInvalidPCR, p, numPCRs-1)
		}
		if i > 0 && s[i-1] == p {
			return nil, fmt.Errorf("%w: PCR %d listed twice", ErrInvalidPCR, p)
		}
	}
	return s, nil
}

func pcrMask(pcrs []int) uint32 {
	var m uint32
	for _, p := range pcrs {
		m |= 1 << p
	}
	return m
}

// selection is the SHA-256 bank selection of sorted, valid pcrs.
func selection(pcrs []int) tpm2.TPMLPCRSelection {
	u := make([]uint, len(pcrs))
	for i, p := range pcrs {
		u[i] = uint(p)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(u...),
	}}}
}
