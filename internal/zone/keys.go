package zone

import (
	"crypto/cipher"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// dataKey is one data key version. Immutable.
type dataKey struct {
	version uint32
	created time.Time
	aead    cipher.AEAD
}

// keySet is the immutable snapshot of a zone's data keys that the hot path
// reads through an atomic pointer. active is the version new writes use.
type keySet struct {
	active uint32
	keys   map[uint32]*dataKey
}

// versions returns the versions held, increasing.
func (ks *keySet) versions() []uint32 {
	out := make([]uint32, 0, len(ks.keys))
	for v := range ks.keys {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// keyDoc is the persisted key document of one zone, stored in plaintext
// JSON at keysPrefix+id: every secret in it is wrapped.
type keyDoc struct {
	Zone string `json:"zone"`
	// KEKVersion numbers the zone KEK; WrappedKEK is it under the root
	// (RootWrapper), with keyAAD(aadKEK, zone, KEKVersion).
	KEKVersion uint32 `json:"kek_version"`
	WrappedKEK []byte `json:"wrapped_kek"`
	// Active is the data key version new records use.
	Active uint32 `json:"active"`
	// DataKeys are wrapped by the KEK, with keyAAD(aadDEK, zone, Version).
	DataKeys []storedDataKey `json:"data_keys"`
}

type storedDataKey struct {
	Version uint32    `json:"version"`
	Created time.Time `json:"created"`
	Wrapped []byte    `json:"wrapped"`
}

// clone returns a deep enough copy of d to modify and persist.
func (d keyDoc) clone() keyDoc {
	d.DataKeys = slices.Clone(d.DataKeys)
	return d
}

func (d keyDoc) marshal() ([]byte, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encoding key document: %w", err)
	}
	return b, nil
}

func parseKeyDoc(b []byte) (keyDoc, error) {
	var d keyDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("%w: %v", ErrCorruptKeys, err)
	}
	if d.KEKVersion == 0 || d.Active == 0 || len(d.DataKeys) == 0 {
		return d, fmt.Errorf("%w: missing KEK or data keys", ErrCorruptKeys)
	}
	return d, nil
}

// newKeyDoc creates the keys of a new zone: KEK version 1 wrapped by root,
// data key version 1 wrapped by the KEK.
func newKeyDoc(zone string, root RootWrapper, now time.Time) (keyDoc, cipher.AEAD, error) {
	kek := newKey()
	defer clear(kek)
	wrapped, err := root.Wrap(kek, keyAAD(aadKEK, zone, 1))
	if err != nil {
		return keyDoc{}, nil, fmt.Errorf("wrapping KEK: %w", err)
	}
	kekAEAD, err := newAEAD(kek)
	if err != nil {
		return keyDoc{}, nil, err
	}
	d := keyDoc{Zone: zone, KEKVersion: 1, WrappedKEK: wrapped}
	d, err = d.addDataKey(kekAEAD, now)
	if err != nil {
		return keyDoc{}, nil, err
	}
	return d, kekAEAD, nil
}

// addDataKey returns d plus a fresh data key version, made active.
func (d keyDoc) addDataKey(kek cipher.AEAD, now time.Time) (keyDoc, error) {
	var highest uint32
	for _, k := range d.DataKeys {
		highest = max(highest, k.Version)
	}
	if highest == ^uint32(0) {
		return d, fmt.Errorf("data key versions exhausted")
	}
	v := highest + 1
	key := newKey()
	defer clear(key)
	d = d.clone()
	d.DataKeys = append(d.DataKeys, storedDataKey{
		Version: v,
		Created: now.UTC(),
		Wrapped: gcmSeal(kek, key, keyAAD(aadDEK, d.Zone, v)),
	})
	d.Active = v
	return d, nil
}

// unwrapKEK returns the zone's KEK cipher, unwrapped with root.
func (d keyDoc) unwrapKEK(root RootWrapper) (cipher.AEAD, error) {
	kek, err := root.Unwrap(d.WrappedKEK, keyAAD(aadKEK, d.Zone, d.KEKVersion))
	if err != nil {
		return nil, fmt.Errorf("unwrapping KEK version %d: %w", d.KEKVersion, err)
	}
	defer clear(kek)
	return newAEAD(kek)
}

// keySet unwraps every data key with kek.
func (d keyDoc) keySet(kek cipher.AEAD) (*keySet, error) {
	ks := &keySet{active: d.Active, keys: make(map[uint32]*dataKey, len(d.DataKeys))}
	for _, sk := range d.DataKeys {
		key, err := gcmOpen(kek, sk.Wrapped, keyAAD(aadDEK, d.Zone, sk.Version))
		if err != nil {
			return nil, fmt.Errorf("unwrapping data key version %d: %w", sk.Version, err)
		}
		aead, err := newAEAD(key)
		clear(key)
		if err != nil {
			return nil, fmt.Errorf("data key version %d: %w", sk.Version, err)
		}
		ks.keys[sk.Version] = &dataKey{version: sk.Version, created: sk.Created, aead: aead}
	}
	if _, ok := ks.keys[d.Active]; !ok {
		return nil, fmt.Errorf("%w: active version %d missing", ErrCorruptKeys, d.Active)
	}
	return ks, nil
}

// rewrapDataKeys returns d with every data key rewrapped from oldKEK to
// newKEK, which becomes KEK version newVersion wrapped as wrappedKEK.
func (d keyDoc) rewrapDataKeys(oldKEK, newKEK cipher.AEAD, newVersion uint32, wrappedKEK []byte) (keyDoc, error) {
	d = d.clone()
	for i, sk := range d.DataKeys {
		aad := keyAAD(aadDEK, d.Zone, sk.Version)
		key, err := gcmOpen(oldKEK, sk.Wrapped, aad)
		if err != nil {
			return d, fmt.Errorf("unwrapping data key version %d: %w", sk.Version, err)
		}
		d.DataKeys[i].Wrapped = gcmSeal(newKEK, key, aad)
		clear(key)
	}
	d.KEKVersion = newVersion
	d.WrappedKEK = wrappedKEK
	return d, nil
}

// withoutVersions returns d minus the given data key versions.
func (d keyDoc) withoutVersions(drop map[uint32]bool) keyDoc {
	d = d.clone()
	d.DataKeys = slices.DeleteFunc(d.DataKeys, func(k storedDataKey) bool { return drop[k.Version] })
	return d
}
