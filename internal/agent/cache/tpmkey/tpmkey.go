// Package tpmkey is the production cache.KeyProtector: the agent's cache
// key is sealed by the TPM under its storage root key, with a policy on the
// current values of chosen PCRs (tpmdev.Seal).
//
// The wrapped key in the cache file is then useless anywhere else: on
// another machine the TPM refuses to load it (tpmdev.ErrOtherTPM), and on
// this machine after an unexpected change to the measured boot chain
// (firmware, bootloader, kernel, Secure Boot state: whatever the chosen PCRs
// measure) the policy fails (tpmdev.ErrPCRMismatch). In both cases Unwrap
// says so plainly; the agent then discards the cache, re-attests and
// re-syncs from the server, which decides whether the new state is allowed.
//
// Choosing PCRs is a trade-off: more PCRs catch more changes but also make
// every legitimate update invalidate the cache (which costs one re-sync, not
// data). PCR 7 (Secure Boot policy) is a common minimum.
package tpmkey

import (
	"errors"
	"fmt"
	"slices"

	"github.com/edgevault/edgevault/internal/tpmdev"
)

// Protector seals and unseals the cache key with a TPM. It is safe for
// concurrent use (the Device serializes TPM commands).
type Protector struct {
	d    *tpmdev.Device
	pcrs []int
}

// New returns a Protector that seals to the SHA-256 values of pcrs in d's
// TPM at the time of Wrap. A bad selection is reported by Wrap.
func New(d *tpmdev.Device, pcrs []int) *Protector {
	return &Protector{d: d, pcrs: slices.Clone(pcrs)}
}

// Wrap seals key to the TPM and the current values of the protector's PCRs.
func (p *Protector) Wrap(key []byte) ([]byte, error) {
	blob, err := p.d.Seal(key, p.pcrs)
	if err != nil {
		return nil, fmt.Errorf("tpmkey: seal the cache key to PCRs %v: %w", p.pcrs, err)
	}
	return blob, nil
}

// Unwrap unseals a blob made by Wrap. The PCR selection is the one recorded
// in the blob at Wrap. Errors wrap tpmdev.ErrOtherTPM when the cache was
// sealed by another TPM and tpmdev.ErrPCRMismatch when it was sealed in
// another boot state.
func (p *Protector) Unwrap(blob []byte) ([]byte, error) {
	key, err := p.d.Unseal(blob)
	switch {
	case err == nil:
		return key, nil
	case errors.Is(err, tpmdev.ErrOtherTPM):
		return nil, fmt.Errorf("tpmkey: the cache key was sealed by another TPM: the cache file was copied from another machine, or this TPM was cleared; it cannot be read here, so the agent must re-attest and re-sync: %w", err)
	case errors.Is(err, tpmdev.ErrPCRMismatch):
		return nil, fmt.Errorf("tpmkey: the cache key was sealed in another boot state: the measured boot chain changed since the cache was written (firmware, bootloader, kernel or Secure Boot update, or tampering), so the agent must re-attest and re-sync: %w", err)
	default:
		return nil, fmt.Errorf("tpmkey: unseal the cache key: %w", err)
	}
}
