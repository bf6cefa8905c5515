package leaf

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"
)

// signerKey is the top-level key the server adds to a signed entry.
const (
	signerKey    = "signer"
	signerPrefix = signerKey + "."

	fieldSignerID  = "signer.id"
	fieldSignerKey = "signer.public_key"
	fieldSignerSig = "signer.signature"

	fieldBatchSize  = "signer.batch_size"
	fieldBatchIndex = "signer.batch_index"
	fieldBatchProof = "signer.batch_proof"
)

// SignerInfo identifies who signed an entry and carries the signature.
// A signer signs batches: one signature over the RFC 6962 Merkle root of
// the leaf hashes of n entries (n may be 1); each entry carries its index
// in the batch and the inclusion proof of its leaf under that root, so it
// can be checked alone.
type SignerInfo struct {
	// ID is the signer's identity, e.g. a SPIFFE ID.
	ID string `json:"id"`
	// PublicKey is the signer's public key, PKIX DER (Ed25519 or ECDSA P-256).
	PublicKey []byte `json:"public_key"`
	// Signature is over [BatchMessage] of the batch the entry was signed in.
	Signature []byte `json:"signature"`
	// BatchSize is the number of entries signed together (at least 1).
	BatchSize uint64 `json:"batch_size"`
	// BatchIndex is the entry's position in its batch, from 0.
	BatchIndex uint64 `json:"batch_index"`
	// BatchProof is the inclusion proof of the entry's leaf hash (over the
	// leaf data without signer.* fields) in the batch's tree.
	BatchProof [][]byte `json:"batch_proof"`
}

func withoutSigner(ds []NamedDigest) []NamedDigest {
	out := make([]NamedDigest, 0, len(ds))
	for _, d := range ds {
		if !isSignerField(d.Name) {
			out = append(out, d)
		}
	}
	return out
}

// BatchMessage returns the bytes signed for a batch of size entries whose
// leaf hashes have the Merkle root root: the text
// "edgevault audit batch v1\n<size>\n<base64 root>\n".
func BatchMessage(size uint64, root tlog.Hash) []byte {
	return fmt.Appendf(nil, "edgevault audit batch v1\n%d\n%s\n", size, base64.StdEncoding.EncodeToString(root[:]))
}

// batchTree holds the Merkle tree of a batch of leaf data.
type batchTree struct {
	size   int64
	stored []tlog.Hash
	root   tlog.Hash
}

// newBatchTree builds the tree over leaves (the signers' leaf data, in order).
func newBatchTree(leaves [][]byte) (*batchTree, error) {
	if len(leaves) == 0 {
		return nil, fmt.Errorf("%w: empty batch", ErrMalformed)
	}
	t := &batchTree{size: int64(len(leaves)), stored: make([]tlog.Hash, 0, 2*len(leaves))}
	for i, l := range leaves {
		hs, err := tlog.StoredHashes(int64(i), l, t)
		if err != nil {
			return nil, fmt.Errorf("batch entry %d: %w", i, err)
		}
		t.stored = append(t.stored, hs...)
	}
	root, err := tlog.TreeHash(t.size, t)
	if err != nil {
		return nil, fmt.Errorf("batch root: %w", err)
	}
	t.root = root
	return t, nil
}

// ReadHashes serves the tree's stored hashes (tlog.HashReader).
func (t *batchTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(t.stored)) {
			return nil, fmt.Errorf("batch tree: no stored hash %d", x)
		}
		out[i] = t.stored[x]
	}
	return out, nil
}

// SignBatch signs a batch of leaf data (each the signer's own [Commit]
// output, without signer.* fields) with key: one signature over
// [BatchMessage] of the batch's root. Ed25519 signs the message, ECDSA
// P-256 (ASN.1 DER signature) its SHA-256; other keys are refused.
func SignBatch(leaves [][]byte, key crypto.Signer) ([]byte, error) {
	for i, l := range leaves {
		ds, err := ParseLeaf(l)
		if err != nil {
			return nil, fmt.Errorf("sign: batch entry %d: %w", i, err)
		}
		for _, d := range ds {
			if isSignerField(d.Name) {
				return nil, fmt.Errorf("sign: batch entry %d: %w: field %q; signer.* names are reserved", i, ErrMalformed, d.Name)
			}
		}
	}
	t, err := newBatchTree(leaves)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	msg := BatchMessage(uint64(t.size), t.root)
	switch pub := key.Public().(type) {
	case ed25519.PublicKey:
		return key.Sign(rand.Reader, msg, crypto.Hash(0))
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("sign: ECDSA key on %s, only P-256 is supported", pub.Curve.Params().Name)
		}
		h := sha256.Sum256(msg)
		return key.Sign(rand.Reader, h[:], crypto.SHA256)
	default:
		return nil, fmt.Errorf("sign: unsupported key type %T (want Ed25519 or ECDSA P-256)", pub)
	}
}

// VerifySignature checks sig over signedPart with a PKIX DER public key
// (Ed25519, or ECDSA P-256 with an ASN.1 signature over SHA-256). A key
// that does not parse is ErrMalformed; a signature that does not verify is
// ErrBadSignature.
func VerifySignature(signedPart, publicKeyDER, sig []byte) error {
	k, err := x509.ParsePKIXPublicKey(publicKeyDER)
	if err != nil {
		return fmt.Errorf("%w: signer public key: %v", ErrMalformed, err)
	}
	switch pub := k.(type) {
	case ed25519.PublicKey:
		if !ed25519.Verify(pub, signedPart, sig) {
			return fmt.Errorf("%w: Ed25519 signature does not verify with the signer's key", ErrBadSignature)
		}
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return fmt.Errorf("%w: signer key is ECDSA on %s, only P-256 is supported", ErrMalformed, pub.Curve.Params().Name)
		}
		h := sha256.Sum256(signedPart)
		if !ecdsa.VerifyASN1(pub, h[:], sig) {
			return fmt.Errorf("%w: ECDSA P-256 signature does not verify with the signer's key", ErrBadSignature)
		}
	default:
		return fmt.Errorf("%w: unsupported signer key type %T (want Ed25519 or ECDSA P-256)", ErrMalformed, pub)
	}
	return nil
}

// SignedLine is one entry of a signed batch as its signer sent it.
type SignedLine struct {
	Line []byte // one compact JSON object without a "signer" member
	Seed []byte // the signer's salt seed for Line
}

// Signed is an entry of a verified batch, with its signer attached.
type Signed struct {
	// Line is the entry line with its "signer" member.
	Line []byte
	// Leaf is Line's leaf data under the signer's seed: Commit(Fields(Line),
	// seed), built from the digests already computed to check the batch.
	Leaf []byte
}

// AttachSigner is the server side of a signed batch: given the entries and
// the signer's identity, key and batch signature, it checks the signature
// over the batch built from Commit(Fields(line), seed) of every entry, and
// returns each line with a top-level "signer" object added before its
// closing brace: {"id","public_key","signature","batch_size",
// "batch_index","batch_proof"}, and its leaf data. Lines must not already
// have a "signer" key or signer.* fields. Nothing is returned unless the
// whole batch verifies.
func AttachSigner(entries []SignedLine, id string, publicKey, signature []byte) ([]Signed, error) {
	if id == "" {
		return nil, fmt.Errorf("attach signer: %w: empty signer id", ErrMalformed)
	}
	idJSON, err := json.Marshal(id)
	if err != nil {
		return nil, fmt.Errorf("attach signer: %w: id: %v", ErrMalformed, err)
	}
	leaves := make([][]byte, len(entries))
	nfields := make([]int, len(entries))
	for i, e := range entries {
		fields, err := Fields(e.Line)
		if err != nil {
			return nil, fmt.Errorf("attach signer: entry %d: %w", i, err)
		}
		for _, f := range fields {
			if f.Name == signerKey || isSignerField(f.Name) {
				return nil, fmt.Errorf("attach signer: entry %d: %w: already has field %q", i, ErrMalformed, f.Name)
			}
		}
		if leaves[i], err = Commit(fields, e.Seed); err != nil {
			return nil, fmt.Errorf("attach signer: entry %d: %w", i, err)
		}
		nfields[i] = len(fields)
	}
	t, err := newBatchTree(leaves)
	if err != nil {
		return nil, fmt.Errorf("attach signer: %w", err)
	}
	if err := VerifySignature(BatchMessage(uint64(t.size), t.root), publicKey, signature); err != nil {
		return nil, fmt.Errorf("attach signer %q: %w", id, err)
	}
	// The signer's fields, as their raw JSON texts; in name order.
	sf := []Field{
		{Name: fieldBatchIndex}, {Name: fieldBatchProof},
		{Name: fieldBatchSize, Value: strconv.AppendInt(nil, t.size, 10)},
		{Name: fieldSignerID, Value: idJSON},
		{Name: fieldSignerKey, Value: quoted(base64.StdEncoding.AppendEncode(nil, publicKey))},
		{Name: fieldSignerSig, Value: quoted(base64.StdEncoding.AppendEncode(nil, signature))},
	}
	out := make([]Signed, len(entries))
	for i, e := range entries {
		proof, err := tlog.ProveRecord(t.size, int64(i), t)
		if err != nil {
			return nil, fmt.Errorf("attach signer: entry %d: %w", i, err)
		}
		sf[0].Value = strconv.AppendInt(sf[0].Value[:0], int64(i), 10)
		p := append(sf[1].Value[:0], '[')
		for j, h := range proof {
			if j > 0 {
				p = append(p, ',')
			}
			p = append(p, '"')
			p = base64.StdEncoding.AppendEncode(p, h[:])
			p = append(p, '"')
		}
		sf[1].Value = append(p, ']')

		trimmed := bytes.TrimRight(e.Line, " \t\r\n")
		body := bytes.TrimRight(trimmed[:len(trimmed)-1], " \t\r\n") // Fields accepted the line: it ends with '}'
		b := make([]byte, 0, len(e.Line)+64+len(sf[1].Value)+len(sf[3].Value)+len(sf[4].Value)+len(sf[5].Value))
		b = append(b, body...)
		if nfields[i] > 0 || !bytes.HasSuffix(body, []byte("{")) {
			b = append(b, ',')
		}
		for j, k := range []int{3, 4, 5, 2, 0, 1} { // id, public_key, signature, batch_size, batch_index, batch_proof
			if j == 0 {
				b = append(b, `"signer":{`...)
			} else {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, sf[k].Name[len(signerPrefix):]...)
			b = append(b, `":`...)
			b = append(b, sf[k].Value...)
		}
		b = append(b, "}}"...)
		out[i].Line = append(b, e.Line[len(trimmed):]...) // keep the line's trailing newline, if any
		if out[i].Leaf, err = withSignerFields(leaves[i], sf, e.Seed); err != nil {
			return nil, fmt.Errorf("attach signer: entry %d: %w", i, err)
		}
	}
	return out, nil
}

// quoted wraps base64 text (which needs no escaping) in quotes.
func quoted(b []byte) []byte {
	return append(append([]byte{'"'}, b...), '"')
}

// withSignerFields returns the leaf data of an entry whose own fields have
// leaf data unsigned, once the signer's fields sf are added: their digests
// under seed merged into the unsigned ones, in name order.
func withSignerFields(unsigned []byte, sf []Field, seed []byte) ([]byte, error) {
	own, err := ParseLeaf(unsigned)
	if err != nil {
		return nil, err
	}
	sl, err := Commit(sf, seed)
	if err != nil {
		return nil, err
	}
	added, err := ParseLeaf(sl)
	if err != nil {
		return nil, err
	}
	merged := make([]NamedDigest, 0, len(own)+len(added))
	i, j := 0, 0
	for i < len(own) || j < len(added) {
		if j == len(added) || (i < len(own) && own[i].Name < added[j].Name) {
			merged = append(merged, own[i])
			i++
		} else {
			merged = append(merged, added[j])
			j++
		}
	}
	return EncodeLeaf(merged)
}

// verifySigner checks a signed entry's signer fields against leafData,
// the leaf encoding of its other fields.
func verifySigner(s *SignerInfo, leafData []byte) error {
	if s.BatchSize == 0 || s.BatchIndex >= s.BatchSize {
		return fmt.Errorf("%w: signer batch_index %d is not in a batch of %d", ErrMalformed, s.BatchIndex, s.BatchSize)
	}
	h := tlog.RecordHash(leafData)
	root, err := proof.RootFromInclusionProof(rfc6962.DefaultHasher, s.BatchIndex, s.BatchSize, h[:], s.BatchProof)
	if err != nil {
		return fmt.Errorf("%w: signer batch_proof: %v", ErrMalformed, err)
	}
	if err := VerifySignature(BatchMessage(s.BatchSize, tlog.Hash(root)), s.PublicKey, s.Signature); err != nil {
		return fmt.Errorf("signer %q: %w", s.ID, err)
	}
	return nil
}

// signerFrom extracts and checks the signer of a signed entry from its
// disclosed fields (values are raw JSON).
func signerFrom(values map[string][]byte) (*SignerInfo, error) {
	var s SignerInfo
	for _, m := range []struct {
		name string
		dst  any
	}{{fieldSignerID, &s.ID}, {fieldSignerKey, &s.PublicKey}, {fieldSignerSig, &s.Signature},
		{fieldBatchSize, &s.BatchSize}, {fieldBatchIndex, &s.BatchIndex}, {fieldBatchProof, &s.BatchProof}} {
		v, ok := values[m.name]
		if !ok {
			return nil, fmt.Errorf("%w: signed entry: field %s is not disclosed", ErrMalformed, m.name)
		}
		if err := json.Unmarshal(v, m.dst); err != nil {
			return nil, fmt.Errorf("%w: field %s: %v", ErrMalformed, m.name, err)
		}
	}
	if s.ID == "" {
		return nil, fmt.Errorf("%w: field %s is empty", ErrMalformed, fieldSignerID)
	}
	return &s, nil
}
