package tpmdev

import (
	"testing"
)

// benchAll measures each operation on d.
func benchAll(b *testing.B, d *Device) {
	pcrs := []int{0, 1, 2, 3, 4, 5, 6, 7}
	b.Run("EK", func(b *testing.B) { // uncached: CreatePrimary (RSA-2048) + NV lookup
		for b.Loop() {
			if _, _, err := New(d.tpm, nil).EK(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("LoadAK-create", func(b *testing.B) {
		for b.Loop() {
			if _, err := d.LoadAK(b.TempDir()); err != nil {
				b.Fatal(err)
			}
		}
	})
	ekPub, _, err := d.EK()
	if err != nil {
		b.Fatal(err)
	}
	akPub, err := d.LoadAK(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	blob, enc := makeCredential(b, ekPub, akPub, []byte("0123456789abcdef0123456789abcdef"))
	b.Run("ActivateCredential", func(b *testing.B) {
		for b.Loop() {
			if _, err := d.ActivateCredential(blob, enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	nonce := digestOf("nonce")
	b.Run("Quote-8PCRs", func(b *testing.B) {
		for b.Loop() {
			if _, err := d.Quote(nonce, pcrs); err != nil {
				b.Fatal(err)
			}
		}
	})
	key := digestOf("key")
	b.Run("Seal", func(b *testing.B) {
		for b.Loop() {
			if _, err := d.Seal(key, pcrs); err != nil {
				b.Fatal(err)
			}
		}
	})
	sealed, err := d.Seal(key, pcrs)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Unseal", func(b *testing.B) {
		for b.Loop() {
			if _, err := d.Unseal(sealed); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSimulator(b *testing.B) {
	d, _ := newSim(b)
	benchAll(b, d)
}

func BenchmarkSwtpmTCP(b *testing.B) {
	benchAll(b, openSpec(b, swtpm(b, "tcp")))
}

func BenchmarkSwtpmUnix(b *testing.B) {
	benchAll(b, openSpec(b, swtpm(b, "unix")))
}
