// Package shamir implements Shamir's secret sharing over GF(2^8), byte by
// byte, in the share format HashiCorp Vault uses for unseal keys.
//
// Each byte of the secret is the constant term of its own random polynomial
// of degree threshold-1; a share holds that polynomial's value at one x
// coordinate for every byte. Any threshold shares determine the polynomials,
// and so the secret, by Lagrange interpolation at x = 0; fewer shares are
// consistent with every possible secret, so they reveal nothing about it.
//
// Share format (compatible with Vault's shamir package): the y values, one
// per byte of the secret, followed by ONE trailing byte holding the share's
// x coordinate. The x coordinates are distinct, non-zero and drawn at random
// (a random permutation of 1..255), so a share's position in the output says
// nothing about its x.
//
// Parameters follow Vault: 1 <= parts <= 255 and threshold <= parts, with
// threshold >= 2 whenever parts > 1. The single case threshold == 1 is
// parts == 1: the polynomial is then the constant secret, the lone share is
// the secret followed by a random x, and Combine accepts that one share.
// (Vault's own unseal flow does not use Shamir at all for one share; the
// barrier package does the same. Split(secret, 1, 1) exists so the package's
// rules have no hole.) Combine cannot know the threshold a share set was made
// with: given fewer shares than that it returns a wrong secret, not an error.
// Callers detect a wrong secret by using it (the barrier's keyring will not
// decrypt).
//
// Field arithmetic uses the AES field (reduction polynomial 0x11b) and runs
// in constant time with respect to the share and secret bytes.
package shamir

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// MaxParts is the largest number of shares Split produces: x coordinates are
// the 255 non-zero elements of GF(2^8).
const MaxParts = 255

// Errors returned by Split and Combine. Match them with errors.Is; the
// returned errors wrap them with detail about the offending argument.
var (
	// ErrInvalidParams is returned by Split for a parts/threshold pair
	// outside the rules in the package doc, or an empty secret.
	ErrInvalidParams = errors.New("shamir: invalid parameters")
	// ErrInvalidShares is returned by Combine for an unusable share set:
	// none, too short, different lengths, or two shares with the same x.
	ErrInvalidShares = errors.New("shamir: invalid shares")
)

// Split divides secret into parts shares, any threshold of which recover it,
// drawing randomness from crypto/rand.
func Split(secret []byte, parts, threshold int) ([][]byte, error) {
	return SplitWithRand(rand.Reader, secret, parts, threshold)
}

// SplitWithRand is Split with an explicit source of randomness, which must
// be cryptographically secure outside tests. An error from r is returned
// wrapped; no shares are returned with it.
func SplitWithRand(r io.Reader, secret []byte, parts, threshold int) ([][]byte, error) {
	if err := checkParams(len(secret), parts, threshold); err != nil {
		return nil, err
	}
	xs, err := randomXs(r, parts)
	if err != nil {
		return nil, err
	}

	// coeffs[0] is the secret byte; coeffs[1:] are random for each byte.
	coeffs := make([]byte, threshold)
	random := make([]byte, threshold-1)
	defer clear(coeffs)
	defer clear(random)

	out := make([][]byte, parts)
	for i := range out {
		out[i] = make([]byte, len(secret)+1)
		out[i][len(secret)] = xs[i]
	}
	for b, s := range secret {
		if _, err := io.ReadFull(r, random); err != nil {
			return nil, fmt.Errorf("shamir: reading randomness: %w", err)
		}
		coeffs[0] = s
		copy(coeffs[1:], random)
		for i := range out {
			out[i][b] = evaluate(coeffs, xs[i])
		}
	}
	return out, nil
}

func checkParams(secretLen, parts, threshold int) error {
	switch {
	case secretLen == 0:
		return fmt.Errorf("%w: secret: must not be empty", ErrInvalidParams)
	case parts < 1 || parts > MaxParts:
		return fmt.Errorf("%w: parts: must be between 1 and %d, got %d", ErrInvalidParams, MaxParts, parts)
	case threshold < 1:
		return fmt.Errorf("%w: threshold: must be at least 1, got %d", ErrInvalidParams, threshold)
	case threshold > parts:
		return fmt.Errorf("%w: threshold: %d exceeds parts (%d)", ErrInvalidParams, threshold, parts)
	case threshold == 1 && parts > 1:
		return fmt.Errorf("%w: threshold: must be at least 2 when splitting into more than one part", ErrInvalidParams)
	}
	return nil
}

// randomXs returns n distinct non-zero x coordinates: the first n entries
// of a uniform random permutation of 1..255 (Fisher-Yates with rejection
// sampling, so there is no modulo bias).
func randomXs(r io.Reader, n int) ([]byte, error) {
	var perm [MaxParts]byte
	for i := range perm {
		perm[i] = byte(i + 1)
	}
	var buf [1]byte
	for i := len(perm) - 1; i > 0; i-- {
		// Uniform j in [0, i]: take a byte, mask it to the smallest
		// power-of-two range covering i, and retry when it is too large.
		mask := byte(1)
		for mask < byte(i) {
			mask = mask<<1 | 1
		}
		for {
			if _, err := io.ReadFull(r, buf[:]); err != nil {
				return nil, fmt.Errorf("shamir: reading randomness: %w", err)
			}
			if j := int(buf[0] & mask); j <= i {
				perm[i], perm[j] = perm[j], perm[i]
				break
			}
		}
	}
	return append([]byte(nil), perm[:n]...), nil
}

// evaluate returns the polynomial with the given coefficients (constant term
// first) at x, by Horner's rule.
func evaluate(coeffs []byte, x byte) byte {
	var y byte
	for i := len(coeffs) - 1; i >= 0; i-- {
		y = gfAdd(gfMul(y, x), coeffs[i])
	}
	return y
}

// Combine reconstructs a secret from shares made by Split. It needs at least
// threshold of them (it cannot check that: see the package doc). Shares must
// all have the same length (at least 2 bytes) and distinct x coordinates.
// The inputs are not modified.
func Combine(parts [][]byte) ([]byte, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: no shares given", ErrInvalidShares)
	}
	if len(parts) > MaxParts {
		return nil, fmt.Errorf("%w: %d shares given, at most %d can be distinct", ErrInvalidShares, len(parts), MaxParts)
	}
	n := len(parts[0])
	if n < 2 {
		return nil, fmt.Errorf("%w: share 1: must be at least 2 bytes, got %d", ErrInvalidShares, n)
	}
	xs := make([]byte, len(parts))
	var seen [256]bool
	for i, p := range parts {
		if len(p) != n {
			return nil, fmt.Errorf("%w: share %d: length %d differs from share 1 (%d)", ErrInvalidShares, i+1, len(p), n)
		}
		x := p[n-1]
		if x == 0 {
			return nil, fmt.Errorf("%w: share %d: x coordinate is zero", ErrInvalidShares, i+1)
		}
		if seen[x] {
			return nil, fmt.Errorf("%w: share %d: duplicate x coordinate", ErrInvalidShares, i+1)
		}
		seen[x] = true
		xs[i] = x
	}

	// Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_j - x_i). The basis
	// depends only on the x coordinates, so compute it once for all bytes.
	basis := make([]byte, len(parts))
	for i := range xs {
		l := byte(1)
		for j := range xs {
			if i != j {
				l = gfMul(l, gfDiv(xs[j], gfAdd(xs[j], xs[i])))
			}
		}
		basis[i] = l
	}

	secret := make([]byte, n-1)
	for b := range secret {
		var s byte
		for i, p := range parts {
			s = gfAdd(s, gfMul(p[b], basis[i]))
		}
		secret[b] = s
	}
	return secret, nil
}
