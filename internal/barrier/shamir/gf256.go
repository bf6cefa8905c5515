package shamir

// Arithmetic in GF(2^8) with the AES reduction polynomial
// x^8 + x^4 + x^3 + x + 1 (0x11b), as FIPS-197 section 4 defines it.
// Addition and subtraction are XOR. Multiplication and inversion below run in
// time independent of their operands: no table lookups indexed by secret
// bytes and no data-dependent branches.

// gfAdd returns a + b (equal to a - b) in GF(2^8).
func gfAdd(a, b uint8) uint8 { return a ^ b }

// gfMul returns a • b in GF(2^8): "Russian peasant" multiplication with the
// conditional steps done by masks.
func gfMul(a, b uint8) uint8 {
	var p uint8
	for i := 0; i < 8; i++ {
		// p ^= a if the low bit of b is set.
		p ^= a & -(b & 1)
		// a = xtime(a): multiply by x, reducing by 0x1b if bit 7 fell off.
		carry := a >> 7
		a = a<<1 ^ 0x1b&-carry
		b >>= 1
	}
	return p
}

// gfInv returns the multiplicative inverse of a, computed as a^254 (the
// group of non-zero elements has order 255). gfInv(0) is 0, as in the AES
// S-box definition; callers never divide by zero.
func gfInv(a uint8) uint8 {
	// a^254 = a^(2+4+8+16+32+64+128).
	sq := gfMul(a, a) // a^2
	r := sq
	for i := 0; i < 6; i++ {
		sq = gfMul(sq, sq) // a^4, a^8, ..., a^128
		r = gfMul(r, sq)
	}
	return r
}

// gfDiv returns a / b. b must be non-zero.
func gfDiv(a, b uint8) uint8 { return gfMul(a, gfInv(b)) }
