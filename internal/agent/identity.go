package agent

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache"
	"github.com/edgevault/edgevault/internal/tpmdev"
)

// identityFile is the file, in StateDir, holding the agent's private key
// (PKCS #8 "PRIVATE KEY") followed by its certificate chain ("CERTIFICATE",
// leaf first). A file with the key alone is an enrollment in progress.
const identityFile = "identity.pem"

// identity is the agent's key and, once enrolled, its certificate. It is
// immutable; renewal replaces it.
type identity struct {
	key      *ecdsa.PrivateKey
	cert     *tls.Certificate // nil until enrolled
	agentID  string
	spiffeID string
}

func (id *identity) expiry() time.Time {
	if id == nil || id.cert == nil {
		return time.Time{}
	}
	return id.cert.Leaf.NotAfter
}

// renewAt is two thirds into the certificate's lifetime.
func (id *identity) renewAt() time.Time {
	l := id.cert.Leaf
	return l.NotBefore.Add(l.NotAfter.Sub(l.NotBefore) * 2 / 3)
}

// parseIdentity decodes identity.pem's content and checks that the
// certificate belongs to zone and to the key.
func parseIdentity(raw []byte, zone string) (*identity, error) {
	var id identity
	var chain [][]byte
	for rest := raw; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			if len(bytes.TrimSpace(rest)) != 0 {
				return nil, errors.New("trailing data that is not PEM")
			}
			break
		}
		switch blk.Type {
		case "PRIVATE KEY":
			if id.key != nil {
				return nil, errors.New("two private keys")
			}
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("private key: %w", err)
			}
			ek, ok := k.(*ecdsa.PrivateKey)
			if !ok || ek.Curve != elliptic.P256() {
				return nil, errors.New("private key is not an ECDSA P-256 key")
			}
			id.key = ek
		case "CERTIFICATE":
			chain = append(chain, blk.Bytes)
		default:
			return nil, fmt.Errorf("unexpected PEM block %q", blk.Type)
		}
	}
	if id.key == nil {
		return nil, errors.New("no private key")
	}
	if len(chain) == 0 {
		return &id, nil // enrollment in progress
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&id.key.PublicKey) {
		return nil, errors.New("the certificate is not for the private key")
	}
	agentID, spiffeID, err := agentName(leaf, zone)
	if err != nil {
		return nil, err
	}
	id.cert = &tls.Certificate{Certificate: chain, PrivateKey: id.key, Leaf: leaf}
	id.agentID, id.spiffeID = agentID, spiffeID
	return &id, nil
}

// agentName reads spiffe://<td>/zone/<zone>/agent/<id> from the leaf.
func agentName(leaf *x509.Certificate, zone string) (agentID, spiffeID string, err error) {
	if len(leaf.URIs) != 1 || leaf.URIs[0].Scheme != "spiffe" {
		return "", "", errors.New("the certificate carries no single SPIFFE ID")
	}
	u := leaf.URIs[0]
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "zone" || parts[2] != "agent" || parts[3] == "" {
		return "", "", fmt.Errorf("SPIFFE ID %q is not /zone/<zone>/agent/<id>", u)
	}
	if parts[1] != zone {
		return "", "", fmt.Errorf("the certificate is for zone %q, the agent is configured for zone %q", parts[1], zone)
	}
	return parts[3], u.String(), nil
}

// encodeIdentity is parseIdentity's inverse.
func encodeIdentity(key *ecdsa.PrivateKey, chain [][]byte) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for _, c := range chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	return out, nil
}

// sealedIdentity is the PEM type of an identity file encrypted under a
// key sealed to the agent's TPM (the "Sealed-Key" header): the plain
// identity, AES-256-GCM, nonce first.
const sealedIdentity = "EDGEVAULT SEALED IDENTITY"

// sealIdentity encrypts raw under a new key wrapped by kp.
func sealIdentity(raw []byte, kp cache.KeyProtector) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	wrapped, err := kp.Wrap(key)
	if err != nil {
		return nil, fmt.Errorf("seal the identity: %w", err)
	}
	aead, err := identityAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: sealedIdentity, Headers: map[string]string{"Sealed-Key": base64.StdEncoding.EncodeToString(wrapped)},
		Bytes: aead.Seal(nonce, nonce, raw, []byte(sealedIdentity))}), nil
}

// unsealIdentity is sealIdentity's inverse; raw that is not sealed is
// returned as it is (an identity from before the agent had a TPM).
func unsealIdentity(raw []byte, kp cache.KeyProtector) ([]byte, error) {
	blk, _ := pem.Decode(raw)
	if blk == nil || blk.Type != sealedIdentity {
		if bytes.Contains(raw, []byte("BEGIN "+sealedIdentity)) {
			return nil, errors.New("sealed identity: not a valid PEM block")
		}
		return raw, nil
	}
	if kp == nil {
		return nil, errors.New("the identity is sealed to a TPM and the agent has none configured")
	}
	wrapped, err := base64.StdEncoding.DecodeString(blk.Headers["Sealed-Key"])
	if err != nil {
		return nil, fmt.Errorf("Sealed-Key: %w", err)
	}
	key, err := kp.Unwrap(wrapped)
	if err != nil {
		return nil, err
	}
	aead, err := identityAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(blk.Bytes) < aead.NonceSize() {
		return nil, errors.New("sealed identity: too short")
	}
	plain, err := aead.Open(nil, blk.Bytes[:aead.NonceSize()], blk.Bytes[aead.NonceSize():], []byte(sealedIdentity))
	if err != nil {
		return nil, fmt.Errorf("sealed identity: %w", err)
	}
	return plain, nil
}

func identityAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// loadIdentity reads StateDir's identity, unsealing it with kp (nil: no
// TPM); nil, nil when there is none. An identity sealed to another TPM or
// boot state is ErrIdentitySealed.
func loadIdentity(dir, zone string, kp cache.KeyProtector) (*identity, error) {
	file := filepath.Join(dir, identityFile)
	raw, err := readPrivate(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if raw, err = unsealIdentity(raw, kp); err != nil {
		if errors.Is(err, tpmdev.ErrPCRMismatch) || errors.Is(err, tpmdev.ErrOtherTPM) {
			return nil, fmt.Errorf("%w: %s: %w", ErrIdentitySealed, file, err)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrIdentity, file, err)
	}
	id, err := parseIdentity(raw, zone)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v; remove it and enroll again with a new join token", ErrIdentity, file, err)
	}
	return id, nil
}

// saveIdentity replaces StateDir's identity atomically and durably,
// sealed with kp when it is not nil.
func saveIdentity(dir string, key *ecdsa.PrivateKey, chain [][]byte, kp cache.KeyProtector) error {
	raw, err := encodeIdentity(key, chain)
	if err != nil {
		return err
	}
	if kp != nil {
		if raw, err = sealIdentity(raw, kp); err != nil {
			return err
		}
	}
	return writePrivate(filepath.Join(dir, identityFile), raw)
}

// readPrivate reads a file that must not be accessible by group or others.
func readPrivate(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; run chmod 600 %s", ErrIdentity, file, perm, file)
	}
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// writePrivate writes file (0600) through a temporary file, fsync and
// rename, so a crash leaves the old or the new content.
func writePrivate(file string, data []byte) error {
	dir := filepath.Dir(file)
	f, err := os.CreateTemp(dir, "."+filepath.Base(file)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func publicKeyField(key *ecdsa.PrivateKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(der), nil
}

// attestor proves the agent's identity to the server: at enrollment, and
// again at each renewal for attestors with hardware behind them.
type attestor interface {
	// enroll returns the fields of the enroll request for key, after the
	// round trips it needs (hc: no client certificate).
	enroll(ctx context.Context, hc *http.Client, key *ecdsa.PrivateKey) (map[string]any, error)
	// renew adds what a renewal for key needs to body (hc presents the
	// current certificate).
	renew(ctx context.Context, hc *http.Client, key *ecdsa.PrivateKey, body map[string]any) error
	// strength says, for sys/health, how much the evidence proves.
	strength() string
}

// joinToken is the weak attestor: holding the token is the whole proof.
type joinToken string

func (t joinToken) enroll(context.Context, *http.Client, *ecdsa.PrivateKey) (map[string]any, error) {
	if t == "" {
		return nil, ErrNoJoinToken
	}
	return map[string]any{"join_token": string(t)}, nil
}

func (joinToken) renew(context.Context, *http.Client, *ecdsa.PrivateKey, map[string]any) error {
	return nil
}

func (joinToken) strength() string { return "join token (weak)" }

// enrollment is the server's answer to enroll and renew.
type enrollment struct {
	AgentID          string `json:"agent_id"`
	SPIFFEID         string `json:"spiffe_id"`
	CertificateChain string `json:"certificate_chain"`
	CACertificate    string `json:"ca_certificate"`
	ExpiresAt        string `json:"expires_at"`
}

// postAttest sends POST /v1/auth/attest/<op> to the server in zone and
// returns the issued chain (DER, leaf first) and the server's clock (its
// answer's Date; zero without one).
func postAttest(ctx context.Context, hc *http.Client, server, zone, op string, body map[string]any) ([][]byte, time.Time, error) {
	var data enrollment
	resp, err := postAttestAPI(ctx, hc, server, zone, op, body, &data)
	if err != nil {
		return nil, time.Time{}, err
	}
	var chain [][]byte
	for rest := []byte(data.CertificateChain); ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			chain = append(chain, blk.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, time.Time{}, fmt.Errorf("%s: the response holds no certificate chain", op)
	}
	date, _ := http.ParseTime(resp.Header.Get("Date"))
	return chain, date, nil
}

// postAttestAPI sends POST /v1/auth/attest/<op> with body to the server in
// zone and decodes the answer's data into out. A 4xx is ErrEnroll with
// the server's reasons.
func postAttestAPI(ctx context.Context, hc *http.Client, server, zone, op string, body map[string]any, out any) (*http.Response, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(server, "/")+"/v1/auth/attest/"+op, bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Vault-Namespace", zone)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: read the response: %w", op, err)
	}
	var env struct {
		Data   json.RawMessage `json:"data"`
		Errors []string        `json:"errors"`
	}
	if err := json.Unmarshal(text, &env); err != nil {
		return nil, fmt.Errorf("%s: %s: the response is not JSON: %w", op, resp.Status, err)
	}
	if resp.StatusCode >= 400 && resp.StatusCode < 500 {
		return nil, fmt.Errorf("%w: %s: %s: %s", ErrEnroll, op, resp.Status, strings.Join(env.Errors, "; "))
	}
	if resp.StatusCode != http.StatusOK || len(env.Data) == 0 || string(env.Data) == "null" {
		return nil, fmt.Errorf("%s: %s: %s", op, resp.Status, strings.Join(env.Errors, "; "))
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return nil, fmt.Errorf("%s: the response's data: %w", op, err)
	}
	return resp, nil
}
