// Package tpmdev is the agent's TPM 2.0 client: the few TPM operations that
// attestation and the TPM-sealed cache key need, over a real TPM, swtpm or
// the in-process simulator.
//
// Three keys matter, all derived from seeds that never leave the TPM:
//
//   - The endorsement key (EK), an RSA-2048 decryption key created from the
//     endorsement seed with the standard template, so it matches the EK
//     certificate a manufacturer (or swtpm_setup) stored in NV. Its public
//     key identifies the TPM; EKHash is how the server names it.
//   - The storage root key (SRK), an ECC P-256 storage key in the owner
//     hierarchy. It is recreated on demand from the owner seed and wraps
//     the AK and sealed objects, so blobs made under it load only in this
//     TPM (and only until the owner hierarchy is cleared).
//   - The attestation key (AK), a restricted ECC P-256 signing key under the
//     SRK, kept in a file as TPM2B_PUBLIC||TPM2B_PRIVATE. Being restricted,
//     it signs only TPM-generated structures such as quotes. Credential
//     activation proves to the server that the AK and the EK live in the
//     same TPM: the server encrypts a secret to the EK bound to the AK's
//     name, and only that TPM can recover it (ActivateCredential).
//
// A quote is the AK's signature over the digest of selected SHA-256 PCRs
// and a caller-chosen qualifying value (the server's nonce). Seal stores a
// small secret under the SRK with a policy on the current values of chosen
// PCRs: Unseal then works only in this TPM and only while those PCRs still
// hold the same values, which is what the agent's cache key needs.
//
// A TPM runs one command at a time and has few transient object slots (the
// reference implementation has three), so a Device serializes all calls
// with one mutex, loads what each call needs and flushes it before
// returning. Keys are kept as saved contexts between calls
// (TPM2_ContextSave), which avoids regenerating the slow RSA EK; after a TPM
// reset the saved contexts are void and the keys are recreated.
package tpmdev
