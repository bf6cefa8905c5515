package tpmdev

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// newSim returns a Device on a fresh simulated TPM (new seeds: "another
// machine" for every call). Only one simulator exists per process, so a
// test that wants a second TPM must close the first (closeSim) before.
func newSim(tb testing.TB) (*Device, *simulator.Simulator) {
	tb.Helper()
	sim, err := simulator.Get()
	if err != nil {
		tb.Fatal(err)
	}
	d := New(transport.FromReadWriteCloser(sim), sim)
	tb.Cleanup(func() { _ = d.Close() })
	return d, sim
}

// makeCredential is the server side of credential activation.
func makeCredential(tb testing.TB, ekPub, akPub, secret []byte) (blob, encSecret []byte) {
	tb.Helper()
	ek, err := tpm2.Unmarshal[tpm2.TPMTPublic](ekPub)
	if err != nil {
		tb.Fatal(err)
	}
	ak, err := tpm2.Unmarshal[tpm2.TPMTPublic](akPub)
	if err != nil {
		tb.Fatal(err)
	}
	name, err := tpm2.ObjectName(ak)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := tpm2.ImportEncapsulationKey(ek)
	if err != nil {
		tb.Fatal(err)
	}
	blob, encSecret, err = tpm2.CreateCredential(rand.Reader, key, name.Buffer, secret)
	if err != nil {
		tb.Fatal(err)
	}
	return blob, encSecret
}

// verifyQuote is the server side of a quote: signature by akPub, nonce,
// PCR selection and digest.
func verifyQuote(akPub []byte, q Quote, nonce []byte, pcrs []int) error {
	ak, err := tpm2.Unmarshal[tpm2.TPMTPublic](akPub)
	if err != nil {
		return err
	}
	pk, err := tpm2.Pub(*ak)
	if err != nil {
		return err
	}
	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](q.Signature)
	if err != nil {
		return err
	}
	e, err := sig.Signature.ECDSA()
	if err != nil {
		return err
	}
	digest := sha256.Sum256(q.Attest)
	if !ecdsa.Verify(pk.(*ecdsa.PublicKey), digest[:], new(big.Int).SetBytes(e.SignatureR.Buffer), new(big.Int).SetBytes(e.SignatureS.Buffer)) {
		return errors.New("bad signature")
	}
	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](q.Attest)
	if err != nil {
		return err
	}
	if att.Type != tpm2.TPMSTAttestQuote || !bytes.Equal(att.ExtraData.Buffer, nonce) {
		return errors.New("not a quote or wrong nonce")
	}
	info, err := att.Attested.Quote()
	if err != nil {
		return err
	}
	sorted := slices.Sorted(slices.Values(pcrs))
	if !bytes.Equal(tpm2.Marshal(info.PCRSelect), tpm2.Marshal(selection(sorted))) {
		return errors.New("wrong PCR selection")
	}
	if len(q.PCRs) != len(pcrs) {
		return fmt.Errorf("%d PCR values for %d PCRs", len(q.PCRs), len(pcrs))
	}
	h := sha256.New()
	for _, p := range sorted {
		h.Write(q.PCRs[p])
	}
	if !bytes.Equal(h.Sum(nil), info.PCRDigest.Buffer) {
		return errors.New("PCR digest mismatch")
	}
	return nil
}

func digestOf(s string) []byte {
	d := sha256.Sum256([]byte(s))
	return d[:]
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
