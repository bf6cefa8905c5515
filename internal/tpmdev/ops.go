package tpmdev

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// AKFile is the name of the AK file LoadAK keeps in its directory.
const AKFile = "ak.blob"

// ekCertIndex is the NV index of the RSA-2048 EK certificate (TCG EK
// Credential Profile, low range).
const ekCertIndex tpm2.TPMHandle = 0x01c00002

// nvChunk is the most NV bytes read per command; every TPM's
// TPM_PT_NV_BUFFER_MAX is at least this.
const nvChunk = 512

// quoteAttempts bounds retries when a PCR changes between the quote and
// reading the PCR values.
const quoteAttempts = 3

// AKTemplate returns the template of the agent's AK: a restricted ECDSA
// P-256/SHA-256 signing key that cannot leave the TPM.
func AKTemplate() tpm2.TPMTPublic { return akTemplate }

var akTemplate = tpm2.TPMTPublic{
	Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
		NoDA: true, Restricted: true, SignEncrypt: true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256})},
		CurveID: tpm2.TPMECCNistP256,
	}),
}

// EK returns the endorsement key's public area (TPMT_PUBLIC, RSA-2048 from
// the standard template) and its certificate (DER) when the TPM holds one
// in NV, else nil. Both are cached after the first call.
func (d *Device) EK() (pub, cert []byte, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ekPub == nil {
		_, flush, err := d.loadEK()
		if err != nil {
			return nil, nil, err
		}
		flush()
	}
	if !d.certRead {
		c, err := d.readEKCert()
		if err != nil {
			return nil, nil, err
		}
		d.ekCert, d.certRead = c, true
	}
	return slices.Clone(d.ekPub), slices.Clone(d.ekCert), nil
}

// readEKCert reads the EK certificate from NV, or returns nil when the
// index is not defined.
func (d *Device) readEKCert() ([]byte, error) {
	pub, err := tpm2.NVReadPublic{NVIndex: ekCertIndex}.Execute(d.tpm)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tpmdev: EK certificate NV index %#x: %w", uint32(ekCertIndex), err)
	}
	nv, err := pub.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpmdev: EK certificate NV index %#x: public area: %w", uint32(ekCertIndex), err)
	}
	out := make([]byte, 0, nv.DataSize)
	for off := uint16(0); off < nv.DataSize; {
		n := min(nv.DataSize-off, nvChunk)
		r, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: ekCertIndex, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: ekCertIndex, Name: pub.NVName},
			Size:       n,
			Offset:     off,
		}.Execute(d.tpm)
		if err != nil {
			return nil, fmt.Errorf("tpmdev: read EK certificate at offset %d: %w", off, err)
		}
		if len(r.Data.Buffer) != int(n) {
			return nil, fmt.Errorf("tpmdev: read EK certificate at offset %d: got %d bytes, asked %d", off, len(r.Data.Buffer), n)
		}
		out = append(out, r.Data.Buffer...)
		off += n
	}
	return out, nil
}

// EKHash returns the hex SHA-256 of the PKIX (SubjectPublicKeyInfo) DER of
// the key in an EK public area (TPMT_PUBLIC). Zone policies name allowed
// EKs by this value, and the server computes it with this function.
func EKHash(pub []byte) (string, error) {
	p, err := parsePublic(pub)
	if err != nil {
		return "", fmt.Errorf("tpmdev: EK public: %w", err)
	}
	key, err := tpm2.Pub(*p)
	if err != nil {
		return "", fmt.Errorf("tpmdev: EK public key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return "", fmt.Errorf("tpmdev: EK public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// LoadAK makes the attestation key available to ActivateCredential and
// Quote and returns its public area (TPMT_PUBLIC). It reads dir/ak.blob
// (TPM2B_PUBLIC || TPM2B_PRIVATE, the private area wrapped by the SRK) or,
// when the file does not exist, creates a new AK and writes that file
// (mode 0600, durably, creating dir with mode 0700 if needed). A file made
// by another TPM fails with ErrOtherTPM; a malformed one with ErrBadBlob.
func (d *Device) LoadAK(dir string) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	path := filepath.Join(dir, AKFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		b, err = d.createAK(dir, path)
		if err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("tpmdev: read AK: %w", err)
	}
	pub, priv, err := parseAKFile(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	prev := d.ak
	d.ak = object{}
	h, name, err := d.loadChild(pub, priv, "AK from "+path)
	if err != nil {
		d.ak = prev
		return nil, err
	}
	defer d.flush(h)
	d.ak.name = name
	if r, err := (tpm2.ContextSave{SaveHandle: h}).Execute(d.tpm); err == nil {
		d.ak.saved = &r.Context
	}
	d.akPub, d.akPriv, d.akSet = pub, priv, true
	return slices.Clone(pub.Bytes()), nil
}

// parseAKFile parses an AK file and checks that it holds an AK: a
// restricted, fixed-TPM ECC signing key.
func parseAKFile(b []byte) (tpm2.TPM2BPublic, tpm2.TPM2BPrivate, error) {
	pub, priv, err := parseKeyPair(b, "AK file")
	if err != nil {
		return pub, priv, err
	}
	p, _ := pub.Contents() // checked by parseKeyPair
	a := p.ObjectAttributes
	if p.Type != tpm2.TPMAlgECC || !a.Restricted || !a.SignEncrypt || a.Decrypt || !a.FixedTPM || !a.FixedParent {
		return pub, priv, fmt.Errorf("%w: AK file: key is not a restricted fixed-TPM ECC signing key", ErrBadBlob)
	}
	return pub, priv, nil
}

// createAK creates an AK under the SRK and writes it to path.
func (d *Device) createAK(dir, path string) ([]byte, error) {
	srk, flushSRK, err := d.loadSRK()
	if err != nil {
		return nil, err
	}
	defer flushSRK()
	r, err := tpm2.Create{ParentHandle: srk, InPublic: tpm2.New2B(akTemplate)}.Execute(d.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpmdev: create AK: %w", err)
	}
	b := append(tpm2.Marshal(r.OutPublic), tpm2.Marshal(r.OutPrivate)...)
	if err := writeFile(dir, path, b); err != nil {
		return nil, fmt.Errorf("tpmdev: write AK: %w", err)
	}
	return b, nil
}

// writeFile writes b to path durably: a temporary file in dir, fsync,
// rename, fsync of dir. An existing file is never overwritten half-way.
func writeFile(dir, path string, b []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, AKFile+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	dh, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer dh.Close()
	return dh.Sync()
}

// ActivateCredential recovers the secret the server bound to this TPM's EK
// and the loaded AK's name with TPM2_MakeCredential (or
// tpm2.CreateCredential): blob is the TPM2B_ID_OBJECT contents and secret
// the TPM2B_ENCRYPTED_SECRET contents. A credential made for another EK or
// AK fails with ErrActivation.
func (d *Device) ActivateCredential(blob, secret []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ak, flushAK, err := d.loadAK()
	if err != nil {
		return nil, err
	}
	defer flushAK()
	ek, flushEK, err := d.loadEK()
	if err != nil {
		return nil, err
	}
	defer flushEK()
	// The standard EK's policy is PolicySecret(TPM_RH_ENDORSEMENT).
	ek.Auth = tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(t transport.TPM, s tpm2.TPMISHPolicy, nonce tpm2.TPM2BNonce) error {
		_, err := tpm2.PolicySecret{AuthHandle: tpm2.TPMRHEndorsement, PolicySession: s, NonceTPM: nonce}.Execute(t)
		return err
	})
	r, err := tpm2.ActivateCredential{
		ActivateHandle: ak,
		KeyHandle:      ek,
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: blob},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: secret},
	}.Execute(d.tpm)
	if err != nil {
		var rc tpm2.TPMRC
		if errors.As(err, &rc) {
			return nil, fmt.Errorf("%w: %v", ErrActivation, err)
		}
		return nil, fmt.Errorf("tpmdev: activate credential: %w", err)
	}
	return r.CertInfo.Buffer, nil
}

// Quote is a TPM quote and the PCR values it covers.
type Quote struct {
	// Attest is the signed TPMS_ATTEST structure.
	Attest []byte
	// Signature is the AK's signature over Attest, a marshalled
	// TPMT_SIGNATURE (ECDSA P-256, SHA-256).
	Signature []byte
	// PCRs maps each quoted PCR index to its 32-byte SHA-256 bank value.
	// The digest in Attest is SHA-256 of these values in ascending index
	// order.
	PCRs map[int][]byte
}

// Quote has the AK sign the SHA-256 bank values of pcrs together with
// qualifying (at most 64 bytes; the server's nonce, or a hash binding it to
// more) and returns the quote with the PCR values. If a PCR changes between
// the quote and reading it, Quote tries again, so the values always match
// the quoted digest.
func (d *Device) Quote(qualifying []byte, pcrs []int) (Quote, error) {
	sorted, err := checkPCRs(pcrs)
	if err != nil {
		return Quote{}, err
	}
	if len(qualifying) > 64 {
		return Quote{}, fmt.Errorf("tpmdev: quote: qualifying data is %d bytes, at most 64", len(qualifying))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	ak, flushAK, err := d.loadAK()
	if err != nil {
		return Quote{}, err
	}
	defer flushAK()
	sel := selection(sorted)
	for range quoteAttempts {
		q, err := tpm2.Quote{
			SignHandle:     ak,
			QualifyingData: tpm2.TPM2BData{Buffer: qualifying},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
			PCRSelect:      sel,
		}.Execute(d.tpm)
		if err != nil {
			return Quote{}, fmt.Errorf("tpmdev: quote: %w", err)
		}
		values, err := d.readPCRs(sorted)
		if err != nil {
			return Quote{}, err
		}
		att, err := q.Quoted.Contents()
		if err != nil {
			return Quote{}, fmt.Errorf("tpmdev: quote: attest: %w", err)
		}
		info, err := att.Attested.Quote()
		if err != nil {
			return Quote{}, fmt.Errorf("tpmdev: quote: attest: %w", err)
		}
		h := sha256.New()
		for _, p := range sorted {
			h.Write(values[p])
		}
		if bytes.Equal(h.Sum(nil), info.PCRDigest.Buffer) {
			return Quote{Attest: q.Quoted.Bytes(), Signature: tpm2.Marshal(q.Signature), PCRs: values}, nil
		}
	}
	return Quote{}, fmt.Errorf("tpmdev: quote: PCRs %v kept changing during %d attempts", sorted, quoteAttempts)
}

// readPCRs reads the SHA-256 bank values of sorted, valid pcrs.
func (d *Device) readPCRs(pcrs []int) (map[int][]byte, error) {
	out := make(map[int][]byte, len(pcrs))
	for chunk := range slices.Chunk(pcrs, 8) { // a TPML_DIGEST holds at most 8
		sel := selection(chunk)
		r, err := tpm2.PCRRead{PCRSelectionIn: sel}.Execute(d.tpm)
		if err != nil {
			return nil, fmt.Errorf("tpmdev: read PCRs %v: %w", chunk, err)
		}
		if !bytes.Equal(tpm2.Marshal(r.PCRSelectionOut), tpm2.Marshal(sel)) || len(r.PCRValues.Digests) != len(chunk) {
			return nil, fmt.Errorf("tpmdev: read PCRs %v: TPM returned another selection (is the SHA-256 bank allocated?)", chunk)
		}
		for i, p := range chunk {
			v := r.PCRValues.Digests[i].Buffer
			if len(v) != sha256.Size {
				return nil, fmt.Errorf("tpmdev: read PCR %d: %d-byte value", p, len(v))
			}
			out[p] = v
		}
	}
	return out, nil
}

// ExtendPCR extends the SHA-256 bank of pcr with a 32-byte digest. Tests
// and drills use it to simulate a boot change.
func (d *Device) ExtendPCR(pcr int, digest []byte) error {
	if _, err := checkPCRs([]int{pcr}); err != nil {
		return err
	}
	if len(digest) != sha256.Size {
		return fmt.Errorf("tpmdev: extend PCR %d: digest is %d bytes, want %d", pcr, len(digest), sha256.Size)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: digest}}},
	}.Execute(d.tpm)
	if err != nil {
		return fmt.Errorf("tpmdev: extend PCR %d: %w", pcr, err)
	}
	return nil
}

// MaxSealSize is the largest input Seal accepts (MAX_SYM_DATA).
const MaxSealSize = 128

// Seal seals data (1..MaxSealSize bytes) under the SRK with a policy on the
// current SHA-256 values of pcrs. The blob records the PCR selection.
// Unseal recovers data only in this TPM (else ErrOtherTPM) and only while
// those PCRs hold the same values (else ErrPCRMismatch).
func (d *Device) Seal(data []byte, pcrs []int) ([]byte, error) {
	sorted, err := checkPCRs(pcrs)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 || len(data) > MaxSealSize {
		return nil, fmt.Errorf("tpmdev: seal: data is %d bytes, want 1..%d", len(data), MaxSealSize)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	values, err := d.readPCRs(sorted)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	for _, p := range sorted {
		h.Write(values[p])
	}
	sel := selection(sorted)
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, fmt.Errorf("tpmdev: seal: %w", err)
	}
	if err := (tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)}, Pcrs: sel}).Update(calc); err != nil {
		return nil, fmt.Errorf("tpmdev: seal: policy: %w", err)
	}
	tmpl := tpm2.TPMTPublic{
		Type: tpm2.TPMAlgKeyedHash, NameAlg: tpm2.TPMAlgSHA256,
		// No UserWithAuth: only the policy authorizes Unseal.
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, NoDA: true},
		AuthPolicy:       tpm2.TPM2BDigest{Buffer: calc.Hash().Digest},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash,
			&tpm2.TPMSKeyedHashParms{Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull}}),
	}
	srk, flushSRK, err := d.loadSRK()
	if err != nil {
		return nil, err
	}
	defer flushSRK()
	r, err := tpm2.Create{
		ParentHandle: srk,
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: data})}},
		InPublic: tpm2.New2B(tmpl),
	}.Execute(d.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpmdev: seal: create: %w", err)
	}
	return sealedBlob{pcrs: sorted, pub: r.OutPublic, priv: r.OutPrivate}.marshal(), nil
}

// Unseal returns the data sealed in blob by Seal. It fails with ErrBadBlob
// for a malformed blob, ErrOtherTPM for a blob sealed by another TPM (or
// before the owner hierarchy was cleared) and ErrPCRMismatch when the
// blob's PCRs no longer hold the values they had at Seal.
func (d *Device) Unseal(blob []byte) ([]byte, error) {
	b, err := parseSealed(blob)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	h, name, err := d.loadChild(b.pub, b.priv, "sealed object")
	if err != nil {
		return nil, fmt.Errorf("tpmdev: unseal: %w", err)
	}
	defer d.flush(h)
	sel := selection(b.pcrs)
	r, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: h, Name: name,
		Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(t transport.TPM, s tpm2.TPMISHPolicy, _ tpm2.TPM2BNonce) error {
			// An empty digest makes the TPM use the PCRs' current values.
			_, err := tpm2.PolicyPCR{PolicySession: s, Pcrs: sel}.Execute(t)
			return err
		})}}.Execute(d.tpm)
	if errors.Is(err, tpm2.TPMRCPolicyFail) {
		return nil, fmt.Errorf("%w: PCRs %v changed since the data was sealed", ErrPCRMismatch, b.pcrs)
	}
	if err != nil {
		return nil, fmt.Errorf("tpmdev: unseal: %w", err)
	}
	return r.OutData.Buffer, nil
}
