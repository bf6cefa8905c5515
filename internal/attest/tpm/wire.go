package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// This file decodes the few TPM 2.0 structures the server reads (TPM 2.0
// Library Part 2): TPMT_PUBLIC for RSA and ECC keys, TPMS_ATTEST of a
// quote, and TPMT_SIGNATURE. It is hand-written rather than go-tpm's
// reflection decoder for two reasons: it must consume its input exactly
// (so the bytes hashed into a Name or stored in a claim are the bytes
// checked), and it sits on the hot path of every attestation (go-tpm's
// decoder cost more than the signature check). Tests check it agrees with
// go-tpm on real structures.

// TPM algorithm and structure tag values used here.
const (
	algRSA       uint16 = 0x0001
	algAES       uint16 = 0x0006
	algMGF1      uint16 = 0x0007
	algSHA256    uint16 = 0x000B
	algSHA384    uint16 = 0x000C
	algNull      uint16 = 0x0010
	algRSASSA    uint16 = 0x0014
	algRSAES     uint16 = 0x0015
	algRSAPSS    uint16 = 0x0016
	algOAEP      uint16 = 0x0017
	algECDSA     uint16 = 0x0018
	algECDH      uint16 = 0x0019
	algECDAA     uint16 = 0x001A
	algKDF1SP56A uint16 = 0x0020
	algKDF2      uint16 = 0x0021
	algKDF1SP108 uint16 = 0x0022
	algECC       uint16 = 0x0023

	eccNistP256 uint16 = 0x0003
	eccNistP384 uint16 = 0x0004

	tpmGenerated    uint32 = 0xff544347
	stAttestQuote   uint16 = 0x8018
	maxTPM2BContent        = 1024
)

// TPMA_OBJECT bits.
const (
	attrFixedTPM            uint32 = 1 << 1
	attrFixedParent         uint32 = 1 << 4
	attrSensitiveDataOrigin uint32 = 1 << 5
	attrRestricted          uint32 = 1 << 16
	attrDecrypt             uint32 = 1 << 17
	attrSign                uint32 = 1 << 18
)

// errShort is the decoders' "ran out of data".
var errShort = errors.New("truncated")

// reader reads fixed-size fields — big-endian in TPM structures,
// little-endian in event logs — and remembers the first error.
type reader struct {
	b     []byte
	order binary.ByteOrder // nil: big-endian (TPM structures)
	err   error
}

func (r *reader) byteOrder() binary.ByteOrder {
	if r.order == nil {
		return binary.BigEndian
	}
	return r.order
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) u8() uint8 {
	if r.err != nil || len(r.b) < 1 {
		r.fail(errShort)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() uint16 {
	if r.err != nil || len(r.b) < 2 {
		r.fail(errShort)
		return 0
	}
	v := r.byteOrder().Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) u32() uint32 {
	if r.err != nil || len(r.b) < 4 {
		r.fail(errShort)
		return 0
	}
	v := r.byteOrder().Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.fail(errShort)
		return 0
	}
	v := r.byteOrder().Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// bytes reads n bytes (aliasing the input).
func (r *reader) bytes(n int) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		r.fail(errShort)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// tpm2b reads a TPM2B: a 16-bit size and that many bytes, at most
// maxTPM2BContent.
func (r *reader) tpm2b(what string) []byte {
	n := int(r.u16())
	if n > maxTPM2BContent {
		r.fail(fmt.Errorf("%s: size %d exceeds %d", what, n, maxTPM2BContent))
		return nil
	}
	return r.bytes(n)
}

// end fails unless all input was consumed.
func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Errorf("%d trailing bytes", len(r.b)))
	}
	return r.err
}

// publicArea is a decoded RSA or ECC TPMT_PUBLIC.
type publicArea struct {
	typ, nameAlg uint16
	attrs        uint32
	authPolicy   []byte
	// symmetric: algNull, or algAES with symBits and symMode.
	symAlg, symBits, symMode uint16
	// scheme and its hash (0 when the scheme has none).
	scheme, schemeHash uint16
	// RSA
	keyBits  uint16
	exponent uint32
	modulus  []byte
	// ECC
	curve, kdf, kdfHash uint16
	x, y                []byte
}

func (p *publicArea) has(attr uint32) bool { return p.attrs&attr != 0 }

// parsePublic decodes an RSA or ECC TPMT_PUBLIC, consuming all of b.
func parsePublic(b []byte) (*publicArea, error) {
	r := &reader{b: b}
	p := &publicArea{typ: r.u16(), nameAlg: r.u16(), attrs: r.u32()}
	p.authPolicy = r.tpm2b("authPolicy")
	if r.err == nil && p.typ != algRSA && p.typ != algECC {
		return nil, fmt.Errorf("key type %#04x, want RSA or ECC", p.typ)
	}
	p.symAlg = r.u16()
	switch p.symAlg {
	case algNull:
	case algAES:
		p.symBits, p.symMode = r.u16(), r.u16()
	default:
		r.fail(fmt.Errorf("symmetric algorithm %#04x, want AES or NULL", p.symAlg))
	}
	p.scheme = r.u16()
	switch p.scheme {
	case algNull, algRSAES:
	case algRSASSA, algRSAPSS, algOAEP, algECDSA, algECDH:
		p.schemeHash = r.u16()
	case algECDAA:
		p.schemeHash = r.u16()
		r.u16() // count
	default:
		r.fail(fmt.Errorf("scheme %#04x not supported", p.scheme))
	}
	if p.typ == algRSA {
		p.keyBits, p.exponent = r.u16(), r.u32()
		p.modulus = r.tpm2b("RSA modulus")
	} else {
		p.curve, p.kdf = r.u16(), r.u16()
		switch p.kdf {
		case algNull:
		case algMGF1, algKDF1SP56A, algKDF2, algKDF1SP108:
			p.kdfHash = r.u16()
		default:
			r.fail(fmt.Errorf("KDF %#04x not supported", p.kdf))
		}
		p.x = r.tpm2b("ECC point x")
		p.y = r.tpm2b("ECC point y")
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return p, nil
}

// quoteAttest is a decoded TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE.
type quoteAttest struct {
	extraData  []byte
	selections []pcrSelection
	pcrDigest  []byte
}

// pcrSelection is one TPMS_PCR_SELECTION.
type pcrSelection struct {
	hash   uint16
	bitmap []byte
}

// parseQuoteAttest decodes a quote's TPMS_ATTEST, consuming all of b. It
// fails for another magic or type.
func parseQuoteAttest(b []byte) (*quoteAttest, error) {
	r := &reader{b: b}
	magic, typ := r.u32(), r.u16()
	if r.err == nil && (magic != tpmGenerated || typ != stAttestQuote) {
		return nil, fmt.Errorf("magic %#08x type %#04x, want a TPM-generated quote", magic, typ)
	}
	q := &quoteAttest{}
	r.tpm2b("qualifiedSigner")
	q.extraData = r.tpm2b("extraData")
	r.u64() // clockInfo.clock
	r.u32() // resetCount
	r.u32() // restartCount
	if safe := r.u8(); safe > 1 {
		r.fail(fmt.Errorf("clockInfo.safe is %d, want 0 or 1", safe))
	}
	r.u64() // firmwareVersion
	n := r.u32()
	if n > 16 {
		r.fail(fmt.Errorf("%d PCR selections", n))
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		s := pcrSelection{hash: r.u16()}
		s.bitmap = r.bytes(int(r.u8()))
		q.selections = append(q.selections, s)
	}
	q.pcrDigest = r.tpm2b("pcrDigest")
	if err := r.end(); err != nil {
		return nil, err
	}
	return q, nil
}

// signature is a decoded ECDSA, RSASSA or RSAPSS TPMT_SIGNATURE.
type signature struct {
	alg, hash uint16
	r, s      []byte // ECDSA
	sig       []byte // RSA
}

// parseSignature decodes a TPMT_SIGNATURE, consuming all of b.
func parseSignature(b []byte) (*signature, error) {
	r := &reader{b: b}
	s := &signature{alg: r.u16()}
	switch s.alg {
	case algECDSA:
		s.hash = r.u16()
		s.r = r.tpm2b("signatureR")
		s.s = r.tpm2b("signatureS")
	case algRSASSA, algRSAPSS:
		s.hash = r.u16()
		s.sig = r.tpm2b("sig")
	default:
		if r.err == nil {
			return nil, fmt.Errorf("signature algorithm %#04x, want ECDSA, RSASSA or RSAPSS", s.alg)
		}
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return s, nil
}
