package tpmdev

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzUnseal feeds mutated sealed blobs to Unseal on a simulated TPM:
// Unseal must never panic, and whatever it accepts must yield the data
// that was sealed (the TPM's integrity check makes any other outcome a
// bug).
func FuzzUnseal(f *testing.F) {
	d, _ := newSim(f)
	data := digestOf("fuzz key")
	for _, pcrs := range [][]int{{7}, {0, 7, 16}} {
		blob, err := d.Seal(data, pcrs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(blob)
	}
	f.Add([]byte("EVS1\x00\x00\x00\x80\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, blob []byte) {
		got, err := d.Unseal(blob)
		if err == nil && !bytes.Equal(got, data) {
			t.Fatalf("Unseal returned %x", got)
		}
	})
}

// FuzzLoadAK feeds mutated AK files to LoadAK: no panics, and an accepted
// file must be the real AK.
func FuzzLoadAK(f *testing.F) {
	d, _ := newSim(f)
	dir := f.TempDir()
	akPub, err := d.LoadAK(dir)
	if err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, AKFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:40])
	f.Fuzz(func(t *testing.T, file []byte) {
		if len(file) == 0 {
			return // an empty file is valid input but tested elsewhere
		}
		fd := t.TempDir()
		if err := os.WriteFile(filepath.Join(fd, AKFile), file, 0o600); err != nil {
			t.Fatal(err)
		}
		pub, err := d.LoadAK(fd)
		if err == nil && !bytes.Equal(pub, akPub) {
			t.Fatalf("LoadAK accepted another key")
		}
		if err != nil && !errors.Is(err, ErrBadBlob) && !errors.Is(err, ErrOtherTPM) {
			t.Logf("LoadAK: %v", err) // TPM refusals (RC) are fine too
		}
	})
}

// FuzzEKHash: no panics on any TPMT_PUBLIC.
func FuzzEKHash(f *testing.F) {
	d, _ := newSim(f)
	pub, _, err := d.EK()
	if err != nil {
		f.Fatal(err)
	}
	akPub, err := d.LoadAK(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pub)
	f.Add(akPub)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := EKHash(b)
		if err == nil && len(h) != 64 {
			t.Fatalf("EKHash = %q", h)
		}
	})
}
