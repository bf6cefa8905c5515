package tpm_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"github.com/edgevault/edgevault/internal/tpmdev"
	"strconv"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/edgevault/edgevault/internal/attest/tpm"
)

// The simulator is one per process (simulator.Get blocks until the last
// one is closed) and each Get is a new TPM, so no test here runs in
// parallel.

// eccAKTemplate is the agent's AK, as the agent creates it.
var eccAKTemplate = tpmdev.AKTemplate()

// rsaAKTemplate is a restricted RSASSA-2048/SHA-256 AK.
var rsaAKTemplate = tpm2.TPMTPublic{
	Type: tpm2.TPMAlgRSA, NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
		NoDA: true, Restricted: true, SignEncrypt: true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
		Scheme: tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgRSASSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256})},
		KeyBits: 2048,
	}),
}

// unrestrictedAKTemplate is a signing key that would sign anything: not
// an acceptable AK.
var unrestrictedAKTemplate = func() tpm2.TPMTPublic {
	t := eccAKTemplate
	t.ObjectAttributes.Restricted = false
	return t
}()

// simTPM is one simulated TPM with its EK and SRK loaded.
type simTPM struct {
	t     testing.TB
	sim   *simulator.Simulator
	tpm   transport.TPM
	ek    *tpm2.CreatePrimaryResponse
	srk   *tpm2.CreatePrimaryResponse
	ekPub []byte // TPMT_PUBLIC
}

// simAK is an AK created under a simTPM's SRK, loaded only while used
// (the reference TPM has three transient object slots).
type simAK struct {
	priv   tpm2.TPM2BPrivate
	pub    tpm2.TPM2BPublic
	Public []byte // TPMT_PUBLIC
}

// openSim starts a fresh simulated TPM with an EK from ekTemplate.
func openSim(t testing.TB, ekTemplate tpm2.TPMTPublic) *simTPM {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	s := &simTPM{t: t, sim: sim, tpm: transport.FromReadWriteCloser(sim)}
	t.Cleanup(func() { sim.Close() })
	s.createPrimaries(ekTemplate)
	return s
}

func (s *simTPM) createPrimaries(ekTemplate tpm2.TPMTPublic) {
	s.t.Helper()
	var err error
	if s.ek, err = (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(ekTemplate)}).Execute(s.tpm); err != nil {
		s.t.Fatalf("create EK: %v", err)
	}
	if s.srk, err = (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}).Execute(s.tpm); err != nil {
		s.t.Fatalf("create SRK: %v", err)
	}
	ekT, err := s.ek.OutPublic.Contents()
	if err != nil {
		s.t.Fatal(err)
	}
	s.ekPub = tpm2.Marshal(ekT)
}

// reset turns the simulator into a brand new TPM (new seeds), with a new
// EK and SRK: "another machine".
func (s *simTPM) reset(ekTemplate tpm2.TPMTPublic) {
	s.t.Helper()
	if err := s.sim.ManufactureReset(); err != nil {
		s.t.Fatal(err)
	}
	s.createPrimaries(ekTemplate)
}

func (s *simTPM) srkAuth() tpm2.AuthHandle {
	return tpm2.AuthHandle{Handle: s.srk.ObjectHandle, Name: s.srk.Name, Auth: tpm2.PasswordAuth(nil)}
}

// newAK creates an AK from tmpl under the SRK.
func (s *simTPM) newAK(tmpl tpm2.TPMTPublic) simAK {
	s.t.Helper()
	cr, err := tpm2.Create{ParentHandle: s.srkAuth(), InPublic: tpm2.New2B(tmpl)}.Execute(s.tpm)
	if err != nil {
		s.t.Fatalf("create AK: %v", err)
	}
	pt, err := cr.OutPublic.Contents()
	if err != nil {
		s.t.Fatal(err)
	}
	return simAK{priv: cr.OutPrivate, pub: cr.OutPublic, Public: tpm2.Marshal(pt)}
}

// withAK loads ak, runs f with its handle, and flushes it.
func (s *simTPM) withAK(ak simAK, f func(h tpm2.AuthHandle) error) error {
	lr, err := tpm2.Load{ParentHandle: s.srkAuth(), InPrivate: ak.priv, InPublic: ak.pub}.Execute(s.tpm)
	if err != nil {
		return fmt.Errorf("load AK: %w", err)
	}
	defer tpm2.FlushContext{FlushHandle: lr.ObjectHandle}.Execute(s.tpm)
	return f(tpm2.AuthHandle{Handle: lr.ObjectHandle, Name: lr.Name, Auth: tpm2.PasswordAuth(nil)})
}

// activate runs TPM2_ActivateCredential for ak with the EK (policy
// session: PolicySecret on the endorsement hierarchy).
func (s *simTPM) activate(ak simAK, blob, encSecret []byte) ([]byte, error) {
	var out []byte
	err := s.withAK(ak, func(h tpm2.AuthHandle) error {
		r, err := tpm2.ActivateCredential{
			ActivateHandle: h,
			KeyHandle: tpm2.AuthHandle{Handle: s.ek.ObjectHandle, Name: s.ek.Name,
				Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(t transport.TPM, ps tpm2.TPMISHPolicy, nonce tpm2.TPM2BNonce) error {
					_, err := tpm2.PolicySecret{AuthHandle: tpm2.TPMRHEndorsement, PolicySession: ps, NonceTPM: nonce}.Execute(t)
					return err
				})},
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: blob},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encSecret},
		}.Execute(s.tpm)
		if err != nil {
			return err
		}
		out = r.CertInfo.Buffer
		return nil
	})
	return out, err
}

// pcrSelection selects pcrs in the SHA-256 bank.
func pcrSelection(pcrs []int) tpm2.TPMLPCRSelection {
	u := make([]uint, len(pcrs))
	for i, p := range pcrs {
		u[i] = uint(p)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(u...)}}}
}

// readPCR reads one SHA-256 PCR.
func (s *simTPM) readPCR(n int) []byte {
	s.t.Helper()
	r, err := tpm2.PCRRead{PCRSelectionIn: pcrSelection([]int{n})}.Execute(s.tpm)
	if err != nil || len(r.PCRValues.Digests) != 1 {
		s.t.Fatalf("read PCR %d: %v", n, err)
	}
	return r.PCRValues.Digests[0].Buffer
}

// quote quotes pcrs with ak over qualifying and reads their values.
func (s *simTPM) quote(ak simAK, qualifying []byte, pcrs []int) tpm.QuoteEvidence {
	s.t.Helper()
	var q tpm.QuoteEvidence
	err := s.withAK(ak, func(h tpm2.AuthHandle) error {
		r, err := tpm2.Quote{
			SignHandle:     h,
			QualifyingData: tpm2.TPM2BData{Buffer: qualifying},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
			PCRSelect:      pcrSelection(pcrs),
		}.Execute(s.tpm)
		if err != nil {
			return err
		}
		q.Attest = r.Quoted.Bytes()
		q.Signature = tpm2.Marshal(r.Signature)
		return nil
	})
	if err != nil {
		s.t.Fatalf("quote: %v", err)
	}
	q.PCRs = make(map[string][]byte, len(pcrs))
	for _, n := range pcrs {
		q.PCRs[strconv.Itoa(n)] = s.readPCR(n)
	}
	return q
}

// extend extends PCR n with SHA-256(data).
func (s *simTPM) extend(n int, data string) {
	s.t.Helper()
	d := sha256.Sum256([]byte(data))
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(n), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: d[:]}}},
	}.Execute(s.tpm)
	if err != nil {
		s.t.Fatalf("extend PCR %d: %v", n, err)
	}
}

// tlsKey returns a fresh agent TLS key's PKIX DER and public key.
func tlsKey(t testing.TB) ([]byte, *ecdsa.PublicKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, &k.PublicKey
}
