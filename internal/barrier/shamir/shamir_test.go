package shamir

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	params := []struct{ n, t int }{
		{1, 1}, {2, 2}, {3, 2}, {3, 3}, {5, 3}, {5, 5}, {10, 2}, {10, 7},
		{16, 9}, {100, 50}, {255, 2}, {255, 255},
	}
	for _, p := range params {
		t.Run(fmt.Sprintf("n=%d,t=%d", p.n, p.t), func(t *testing.T) {
			for _, size := range []int{1, 16, 32, 33} {
				secret := make([]byte, size)
				_, _ = rand.Read(secret)
				shares, err := Split(secret, p.n, p.t)
				if err != nil {
					t.Fatalf("Split: %v", err)
				}
				if len(shares) != p.n {
					t.Fatalf("got %d shares, want %d", len(shares), p.n)
				}
				xs := map[byte]bool{}
				for _, s := range shares {
					if len(s) != size+1 {
						t.Fatalf("share length %d, want %d", len(s), size+1)
					}
					x := s[size]
					if x == 0 || xs[x] {
						t.Fatalf("bad or duplicate x %#02x", x)
					}
					xs[x] = true
				}
				// Several random subsets of size t (and one larger one)
				// in random orders all recover the secret.
				for trial := 0; trial < 5; trial++ {
					perm := rng.Perm(p.n)
					k := p.t
					if trial == 4 {
						k = p.n
					}
					subset := make([][]byte, k)
					for i := range subset {
						subset[i] = shares[perm[i]]
					}
					got, err := Combine(subset)
					if err != nil {
						t.Fatalf("Combine: %v", err)
					}
					if !bytes.Equal(got, secret) {
						t.Fatalf("Combine(%d shares) = %x, want %x", k, got, secret)
					}
				}
			}
		})
	}
}

// With t-1 shares the interpolation gives a value other than the secret
// (with overwhelming probability for a 32-byte secret), and the t-1 shares
// are equally consistent with any secret: for a fixed set of t-1 shares,
// every candidate secret yields a valid t-th share.
func TestBelowThresholdRevealsNothing(t *testing.T) {
	secret := bytes.Repeat([]byte{0x42}, 32)
	for _, p := range []struct{ n, t int }{{3, 2}, {5, 3}, {10, 7}} {
		shares, err := Split(secret, p.n, p.t)
		if err != nil {
			t.Fatal(err)
		}
		// Combine cannot tell: it interpolates whatever it is given (one
		// share of a t=2 split "combines" to its own y bytes).
		got, err := Combine(shares[:p.t-1])
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(got, secret) {
			t.Fatalf("n=%d t=%d: %d shares recovered the secret", p.n, p.t, p.t-1)
		}
	}

	// Perfect secrecy, exhaustively for a 1-byte secret with t=2: fix one
	// share (x1, y1). For each candidate secret s there is exactly one line
	// through (0, s) and (x1, y1), so each s is equally likely.
	shares, err := Split([]byte{0x99}, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	x1, y1 := shares[0][1], shares[0][0]
	x2 := byte(1)
	if x2 == x1 {
		x2 = 2
	}
	seen := map[byte]bool{}
	for s := 0; s < 256; s++ {
		// The line f(x) = s + a*x through (x1, y1): a = (y1 - s)/x1.
		a := gfDiv(gfAdd(y1, byte(s)), x1)
		y2 := gfAdd(byte(s), gfMul(a, x2))
		got, err := Combine([][]byte{{y1, x1}, {y2, x2}})
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != byte(s) {
			t.Fatalf("candidate %d: combined to %d", s, got[0])
		}
		seen[got[0]] = true
	}
	if len(seen) != 256 {
		t.Fatalf("one share is consistent with only %d secrets, want 256", len(seen))
	}
}

func TestSplitParams(t *testing.T) {
	tests := []struct {
		name          string
		secret        []byte
		parts, thresh int
		wantErr       bool
	}{
		{"ok 1 of 1", []byte("s"), 1, 1, false},
		{"ok 2 of 3", []byte("s"), 3, 2, false},
		{"empty secret", nil, 3, 2, true},
		{"zero parts", []byte("s"), 0, 0, true},
		{"too many parts", []byte("s"), 256, 2, true},
		{"threshold zero", []byte("s"), 3, 0, true},
		{"threshold above parts", []byte("s"), 3, 4, true},
		{"threshold one with many parts", []byte("s"), 3, 1, true},
		{"negative parts", []byte("s"), -1, 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Split(tc.secret, tc.parts, tc.thresh)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidParams) {
					t.Fatalf("err = %v, want ErrInvalidParams", err)
				}
				if out != nil {
					t.Fatal("shares returned with an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestOneOfOne(t *testing.T) {
	secret := []byte("the secret")
	shares, err := Split(secret, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shares[0][:len(secret)], secret) {
		t.Fatalf("1-of-1 share y bytes = %x, want the secret", shares[0][:len(secret)])
	}
	got, err := Combine(shares)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Combine = %q, %v", got, err)
	}
}

func TestCombineRejects(t *testing.T) {
	shares, err := Split([]byte("secret"), 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	dup := append([]byte(nil), shares[0]...)
	dup[0] ^= 1 // different y, same x
	zeroX := append([]byte(nil), shares[1]...)
	zeroX[len(zeroX)-1] = 0
	tests := []struct {
		name  string
		parts [][]byte
	}{
		{"none", nil},
		{"too short", [][]byte{{1}, {2}}},
		{"empty share", [][]byte{{}, {}}},
		{"length mismatch", [][]byte{shares[0], shares[1][:4]}},
		{"duplicate x", [][]byte{shares[0], dup}},
		{"identical shares", [][]byte{shares[0], shares[0]}},
		{"zero x", [][]byte{shares[0], zeroX}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Combine(tc.parts); !errors.Is(err, ErrInvalidShares) {
				t.Fatalf("err = %v, want ErrInvalidShares", err)
			}
		})
	}
}

func TestSplitRandomnessError(t *testing.T) {
	_, err := SplitWithRand(bytes.NewReader(make([]byte, 10)), []byte("secret"), 3, 2)
	if err == nil {
		t.Fatal("Split with an exhausted reader succeeded")
	}
}

// The x coordinates come from the reader: different randomness, different x.
func TestSplitUsesReaderForX(t *testing.T) {
	a, err := SplitWithRand(mrand.NewChaCha8([32]byte{1}), []byte("s"), 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, err := SplitWithRand(mrand.NewChaCha8([32]byte{1}), []byte("s"), 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	c, err := SplitWithRand(mrand.NewChaCha8([32]byte{2}), []byte("s"), 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatal("same reader seed gave different shares")
		}
	}
	same := 0
	for i := range a {
		if bytes.Equal(a[i], c[i]) {
			same++
		}
	}
	if same == len(a) {
		t.Fatal("different reader seeds gave the same shares")
	}
}

func FuzzCombine(f *testing.F) {
	shares, err := Split([]byte("fuzz seed secret"), 3, 2)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(shares[0], shares[1], []byte(nil))
	f.Add(shares[0], shares[1], shares[2])
	f.Add([]byte{1}, []byte{2}, []byte{3})
	f.Add([]byte{}, []byte{}, []byte{})
	f.Add([]byte{5, 0}, []byte{6, 0}, []byte(nil))
	f.Add(shares[0], shares[0], []byte(nil))
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		parts := [][]byte{a, b}
		if c != nil {
			parts = append(parts, c)
		}
		in := make([][]byte, len(parts))
		for i, p := range parts {
			in[i] = append([]byte(nil), p...)
		}
		got, err := Combine(parts)
		for i := range parts {
			if !bytes.Equal(parts[i], in[i]) {
				t.Fatal("Combine modified its input")
			}
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidShares) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		if len(got) != len(a)-1 {
			t.Fatalf("secret length %d, want %d", len(got), len(a)-1)
		}
		// Combining is order independent.
		rev := make([][]byte, len(parts))
		for i := range parts {
			rev[len(parts)-1-i] = parts[i]
		}
		got2, err := Combine(rev)
		if err != nil || !bytes.Equal(got, got2) {
			t.Fatalf("Combine depends on share order: %x vs %x (%v)", got, got2, err)
		}
	})
}

func BenchmarkSplitCombine(b *testing.B) {
	secret := make([]byte, 32)
	for b.Loop() {
		s, err := Split(secret, 5, 3)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Combine(s[:3]); err != nil {
			b.Fatal(err)
		}
	}
}
