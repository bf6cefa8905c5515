// Package barrier encrypts every value edgevault stores, and holds the keys
// that do it.
//
// # Key hierarchy
//
//	seal ──unlocks──► root key ──encrypts──► keyring (terms 1..n) ──encrypt──► records
//
// Each level protects the next:
//
//   - The seal protects the root key. Today it is Shamir's secret sharing
//     (package shamir): the root key is split into N unseal keys, any T of
//     which rebuild it; edgevault never stores the root key or the shares.
//     Later seals (an HSM key over PKCS#11, a dev key file) plug in at the
//     same place: all they have to produce is the root key.
//   - The root key (32 bytes, AES-256-GCM) encrypts exactly one thing: the
//     keyring, stored at KeyringPath.
//   - The keyring holds the data keys, numbered by "term" (uint32, from 1).
//     One term is active; new writes use it. Rotate adds a term and makes it
//     active; older terms stay so older records still decrypt.
//   - Records: every value written through the Barrier is an envelope
//     (see Keyring.Encrypt) naming its term, with the full storage path as
//     associated data, so a ciphertext copied to another path does not
//     decrypt and tampering is detected.
//
// Envelope format (version 1), big-endian:
//
//	[1 byte version = 1][4 bytes term][12 bytes nonce][GCM ciphertext || 16-byte tag]
//
// Term 0 marks the keyring itself, encrypted under the root key.
//
// # Sealed and unsealed
//
// A Barrier starts sealed: it holds no keys and every storage method returns
// ErrSealed. Unseal(rootKey) decrypts the keyring and publishes it as an
// immutable snapshot through an atomic pointer, so the hot path (Get, Put)
// takes no lock. Seal drops the snapshot and zeroes the key bytes it holds.
// (Go cannot promise that no copy survives: the AES key schedules inside the
// cached cipher.AEAD values are unreachable once sealed and left to the
// garbage collector.)
//
// The Seal runs Vault's init and unseal protocol on top: it generates the
// root key, splits it into unseal keys, stores the seal configuration, and
// collects unseal keys until it has the threshold.
//
// # Reserved keys
//
// The barrier keeps its own records under ReservedPrefix ("core/barrier/")
// in the physical store: the encrypted keyring and the plaintext seal
// configuration. Through the Barrier these keys do not exist: Get, Put,
// Delete and Txn on them return ErrReservedKey, and List hides them (a
// directory that only holds them is not listed).
package barrier
