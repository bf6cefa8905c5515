package tpm

import "io"

// SetRandForTest replaces the source of nonces and credential secrets:
// benchmarks use a constant one so that evidence generated once with the
// simulator answers every challenge.
func SetRandForTest(a *Attestor, r io.Reader) { a.rand = r }
