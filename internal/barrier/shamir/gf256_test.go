package shamir

import "testing"

// FIPS-197 section 4.2 and 4.2.1 give worked products in GF(2^8).
func TestGFMulFIPS197(t *testing.T) {
	tests := []struct{ a, b, want uint8 }{
		{0x57, 0x83, 0xc1}, // section 4.2
		{0x57, 0x13, 0xfe}, // section 4.2.1
		{0x57, 0x02, 0xae}, // xtime({57}), section 4.2.1
		{0x57, 0x04, 0x47},
		{0x57, 0x08, 0x8e},
		{0x57, 0x10, 0x07},
		{0x00, 0xff, 0x00},
		{0x01, 0xab, 0xab},
	}
	for _, tc := range tests {
		if got := gfMul(tc.a, tc.b); got != tc.want {
			t.Errorf("gfMul(%#02x, %#02x) = %#02x, want %#02x", tc.a, tc.b, got, tc.want)
		}
		if got := gfMul(tc.b, tc.a); got != tc.want {
			t.Errorf("gfMul(%#02x, %#02x) = %#02x, want %#02x (commuted)", tc.b, tc.a, got, tc.want)
		}
	}
}

// Inverses as published in the AES multiplicative-inverse table (the input
// to the S-box affine transform), e.g. FIPS-197 section 5.1.1's {53} -> {ca}.
func TestGFInvTable(t *testing.T) {
	tests := []struct{ a, want uint8 }{
		{0x00, 0x00}, // by convention
		{0x01, 0x01},
		{0x02, 0x8d},
		{0x03, 0xf6},
		{0x53, 0xca},
		{0xca, 0x53},
		{0xff, 0x1c},
	}
	for _, tc := range tests {
		if got := gfInv(tc.a); got != tc.want {
			t.Errorf("gfInv(%#02x) = %#02x, want %#02x", tc.a, got, tc.want)
		}
	}
}

// sboxAffine applies the AES S-box affine transform to b.
func sboxAffine(b uint8) uint8 {
	rotl := func(v uint8, n uint) uint8 { return v<<n | v>>(8-n) }
	return b ^ rotl(b, 1) ^ rotl(b, 2) ^ rotl(b, 3) ^ rotl(b, 4) ^ 0x63
}

// The AES S-box is inverse-then-affine; checking some published S-box
// entries (FIPS-197 Figure 7) checks gfInv on those inputs end to end.
func TestGFInvViaSBox(t *testing.T) {
	tests := []struct{ in, out uint8 }{
		{0x00, 0x63}, {0x01, 0x7c}, {0x53, 0xed}, {0x10, 0xca},
		{0xff, 0x16}, {0x9a, 0xb8}, {0x7c, 0x10}, {0xc2, 0x25},
	}
	for _, tc := range tests {
		if got := sboxAffine(gfInv(tc.in)); got != tc.out {
			t.Errorf("S(%#02x) = %#02x, want %#02x", tc.in, got, tc.out)
		}
	}
}

// Field axioms over every element (and every pair, for mul/div).
func TestGFFieldProperties(t *testing.T) {
	for a := 1; a < 256; a++ {
		if got := gfMul(uint8(a), gfInv(uint8(a))); got != 1 {
			t.Fatalf("a * inv(a) = %#02x for a = %#02x", got, a)
		}
		for b := 1; b < 256; b++ {
			p := gfMul(uint8(a), uint8(b))
			if gfDiv(p, uint8(b)) != uint8(a) {
				t.Fatalf("(a*b)/b != a for a=%#02x b=%#02x", a, b)
			}
		}
	}
	// Distributivity on a sample.
	for a := 0; a < 256; a += 7 {
		for b := 0; b < 256; b += 11 {
			for c := 0; c < 256; c += 13 {
				l := gfMul(uint8(a), gfAdd(uint8(b), uint8(c)))
				r := gfAdd(gfMul(uint8(a), uint8(b)), gfMul(uint8(a), uint8(c)))
				if l != r {
					t.Fatalf("distributivity fails for %d %d %d", a, b, c)
				}
			}
		}
	}
}
