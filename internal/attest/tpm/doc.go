// Package tpm is the server side of TPM 2.0 attestation: it decides whether
// an edge agent's evidence proves that the agent runs on a machine the
// zone trusts, in a boot state the zone accepts.
//
// # What is proved, and how
//
// Three keys take part. The endorsement key (EK) is a decryption key burned
// into the TPM; the zone's policy names the EKs it trusts, by hash or by the
// CA that certified them. The attestation key (AK) is a restricted signing
// key the agent creates in the same TPM; "restricted" means the TPM signs
// with it only data the TPM itself produced (quotes, starting with the
// TPM_GENERATED magic), never arbitrary bytes. The agent's TLS key is a
// software key the agent certificate will be issued for.
//
//  1. Begin: the agent sends the EK public key (and its EK certificate, if
//     the TPM has one) and the AK public key. CheckEK accepts the EK under
//     the zone's Policy. MakeCredential encrypts a random secret to the EK,
//     bound to the AK's name (the hash of its public area, attributes
//     included): only a TPM holding that EK will release the secret, and
//     only when an object with that exact name is loaded in it
//     (TPM2_ActivateCredential). The server stores the pending challenge
//     (AK, secret hash, nonce) in the zone's store and returns the
//     credential and the nonce.
//  2. Attest: the agent returns the secret, proving the AK lives in the
//     EK's TPM, and a TPM2_Quote signed by the AK over the zone's PCR
//     selection, whose qualifying data is SHA-256(nonce || TLS public key
//     DER) (Qualifying): fresh, and bound to the key the certificate is for.
//     VerifyQuote checks the signature, the qualifying data, the PCR
//     selection, that the reported PCR values hash to the quoted digest,
//     and that they match one of the policy's allowed sets.
//
// The agent may add the TPM's TCG2 event log (the firmware's list of
// measurements). The log proves nothing by itself; CheckEventLog replays
// its SHA-256 digests and requires every quoted PCR it covers to come out
// at the quoted value, so the events then explain values the TPM signed
// (and yield claims such as the Secure Boot state). A log that does not
// replay is ErrEventLog.
//
// The challenge is single use: Attest deletes it before checking anything,
// so a wrong answer spends it, and a replayed answer finds nothing
// (ErrNonce). It also expires after the policy's MaxQuoteAge.
//
// Re-attestation (certificate renewal, or on demand) skips the credential
// step: the AK was bound to the EK at enrollment, so a fresh quote by the
// stored AK over a fresh nonce is enough (ReattestChallenge, VerifyReattest).
//
// # Trust boundary
//
// Everything the agent sends is untrusted input: every decoder bounds its
// input and never panics. The TPM structures the server reads (TPMT_PUBLIC,
// a quote's TPMS_ATTEST, TPMT_SIGNATURE) are decoded by a small
// hand-written decoder that must consume its input exactly, so the AK
// name the server binds the credential to is the SHA-256 of exactly the
// bytes it checked and stores; tests hold it to agree with go-tpm. The pure
// functions (MakeCredential, CheckEK, VerifyQuote, Policy.Validate) hold the
// decisions; Attestor adds the storage round trip. Server code is pure Go;
// only the tests use the TPM simulator (cgo).
//
// # Storage
//
// Pending challenges live in the zone's (encrypted) store at
//
//	attest/tpm/challenges/<hex SHA-256 of the challenge ID>
//
// so the store never holds a usable challenge ID. A record holds the AK
// public area, the SHA-256 of the credential secret (not the secret), the
// nonce and the expiry. Tidy removes expired records.
package tpm
