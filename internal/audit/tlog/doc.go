// Package tlog is edgevault's transparency log: an append-only Merkle log
// (RFC 6962 hashing) stored on local files in the C2SP tlog-tiles layout,
// with signed checkpoints in the C2SP tlog-checkpoint format.
package tlog

import (
	_ "github.com/transparency-dev/merkle/compact"
	_ "golang.org/x/mod/sumdb/note"
	_ "golang.org/x/mod/sumdb/tlog"
)
