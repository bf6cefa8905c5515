package pki

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/edgevault/edgevault/internal/logical"
	"github.com/edgevault/edgevault/internal/storage"
)

// keyCRLNumber holds the last CRL number; it survives CRL invalidation so
// numbers only grow.
const keyCRLNumber = "crl_number"

// revokedRecord is a stored revocation.
type revokedRecord struct {
	Serial         string `json:"serial_number"`
	RevocationTime int64  `json:"revocation_time"` // Unix seconds
	// NotAfter is the certificate's expiry (Unix seconds), 0 when the
	// certificate was not stored (no_store) and is unknown; tidy keeps
	// such records.
	NotAfter int64 `json:"not_after"`
}

// crlRecord is the cached, signed CRL.
type crlRecord struct {
	DER        []byte `json:"der"`
	NextUpdate int64  `json:"next_update"` // Unix seconds
}

// handleRevoke serves revoke: serial_number (or certificate, PEM).
func (b *Backend) handleRevoke(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	s, _, err := logical.String(req.Data, "serial_number")
	if err != nil {
		return nil, err
	}
	if s == "" {
		pemCert, _, err := logical.String(req.Data, "certificate")
		if err != nil {
			return nil, err
		}
		if pemCert == "" {
			return nil, logical.InvalidRequest("field \"serial_number\": missing")
		}
		certs, err := parseCertBundle("certificate", pemCert)
		if err != nil {
			return nil, err
		}
		s = formatSerial(certs[0].SerialNumber)
	}
	serial, err := parseSerial("serial_number", s)
	if err != nil {
		return nil, err
	}
	rec, err := b.revoke(ctx, serial, false, 0)
	if err != nil {
		return nil, err
	}
	t := time.Unix(rec.RevocationTime, 0).UTC()
	return &logical.Response{Data: map[string]any{
		"revocation_time":         rec.RevocationTime,
		"revocation_time_rfc3339": t.Format(time.RFC3339Nano),
		"state":                   "revoked",
	}, Warnings: fieldSet{"serial_number", "certificate"}.unknownWarnings(req.Data)}, nil
}

// revoke records the revocation of a canonical serial and invalidates the
// cached CRL, in one transaction. An already revoked serial returns its
// first record. allowUnknown records serials with no stored certificate,
// with notAfter (Unix seconds, 0 if unknown) as their expiry.
func (b *Backend) revoke(ctx context.Context, serial string, allowUnknown bool, notAfter int64) (revokedRecord, error) {
	b.crlMu.RLock()
	defer b.crlMu.RUnlock()
	key := storageSerial(serial)
	if raw, err := b.store.Get(ctx, prefixRev+key); err == nil {
		var rec revokedRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return rec, fmt.Errorf("pki: stored revocation %s: %w", serial, err)
		}
		return rec, nil
	} else if !isNotFound(err) {
		return revokedRecord{}, fmt.Errorf("pki: read revocation %s: %w", serial, err)
	}
	if ca, err := b.loadCA(ctx); err == nil && formatSerial(ca.cert.SerialNumber) == serial {
		return revokedRecord{}, logical.InvalidRequest("field \"serial_number\": %s is this mount's own CA certificate; DELETE root instead", serial)
	} else if err != nil && !errors.Is(err, ErrNoCA) {
		return revokedRecord{}, err
	}
	rec := revokedRecord{Serial: serial, RevocationTime: b.clock().Unix()}
	der, err := b.store.Get(ctx, prefixCert+key)
	switch {
	case err == nil:
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return rec, fmt.Errorf("pki: stored certificate %s: %w", serial, err)
		}
		rec.NotAfter = c.NotAfter.Unix()
	case isNotFound(err) && allowUnknown:
		rec.NotAfter = notAfter
	case isNotFound(err):
		return rec, fmt.Errorf("%w: %s", ErrUnknownSerial, serial)
	default:
		return rec, fmt.Errorf("pki: read certificate %s: %w", serial, err)
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return rec, fmt.Errorf("pki: encode revocation: %w", err)
	}
	err = b.store.Txn(ctx, []storage.Op{
		{Kind: storage.OpPut, Key: prefixRev + key, Value: raw},
		{Kind: storage.OpDelete, Key: keyCRL},
	})
	if err != nil {
		return rec, fmt.Errorf("pki: store revocation %s: %w", serial, err)
	}
	b.log.Info("pki: certificate revoked", "serial_number", serial)
	return rec, nil
}

// readCRL serves crl (raw DER), crl/pem (raw PEM) and cert/crl (JSON
// {"certificate"} in PEM), rebuilt when a revocation or tidy invalidated it
// or it is past its NextUpdate.
func (b *Backend) readCRL(ctx context.Context, path string) (*logical.Response, error) {
	der, err := b.currentCRL(ctx, false)
	if err != nil {
		return nil, err
	}
	pemText := pemString("X509 CRL", der)
	resp := &logical.Response{Data: map[string]any{"certificate": pemText}}
	switch path {
	case "crl": // Vault: the DER CRL itself
		resp.Raw, resp.ContentType = der, "application/pkix-crl"
	case "crl/pem":
		resp.Raw, resp.ContentType = []byte(pemText), "application/x-pem-file"
	}
	return resp, nil
}

// rotateCRL serves crl/rotate: rebuild the CRL now.
func (b *Backend) rotateCRL(ctx context.Context) (*logical.Response, error) {
	if _, err := b.currentCRL(ctx, true); err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{"success": true}}, nil
}

// CRL returns the current CRL in DER, signed by the mount's CA and listing
// every recorded revocation, rebuilding it if needed.
func (b *Backend) CRL(ctx context.Context) ([]byte, error) { return b.currentCRL(ctx, false) }

// currentCRL returns the cached CRL or builds, signs and stores a new one.
func (b *Backend) currentCRL(ctx context.Context, force bool) ([]byte, error) {
	if !force {
		if der, ok, err := b.cachedCRL(ctx); err != nil || ok {
			return der, err
		}
	}
	b.crlMu.Lock()
	defer b.crlMu.Unlock()
	if !force {
		if der, ok, err := b.cachedCRL(ctx); err != nil || ok {
			return der, err
		}
	}
	ca, err := b.loadCA(ctx)
	if err != nil {
		return nil, err
	}
	names, err := b.store.List(ctx, prefixRev)
	if err != nil {
		return nil, fmt.Errorf("pki: list revocations: %w", err)
	}
	entries := make([]x509.RevocationListEntry, 0, len(names))
	for _, n := range names {
		raw, err := b.store.Get(ctx, prefixRev+n)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pki: read revocation %s: %w", n, err)
		}
		var rec revokedRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return nil, fmt.Errorf("pki: stored revocation %s: %w", n, err)
		}
		sn, ok := new(big.Int).SetString(storageToHex(n), 16)
		if !ok {
			return nil, fmt.Errorf("pki: stored revocation key %q is not a serial", n)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: sn, RevocationTime: time.Unix(rec.RevocationTime, 0).UTC()})
	}
	number := int64(0)
	if raw, err := b.store.Get(ctx, keyCRLNumber); err == nil {
		if err := json.Unmarshal(raw, &number); err != nil {
			return nil, fmt.Errorf("pki: stored CRL number: %w", err)
		}
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("pki: read CRL number: %w", err)
	}
	number++
	now := b.clock()
	next := now.Add(DefaultCRLLifetime)
	if next.After(ca.cert.NotAfter) {
		next = ca.cert.NotAfter
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                now,
		NextUpdate:                next,
		RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign CRL: %w", err)
	}
	rawCRL, err := json.Marshal(crlRecord{DER: der, NextUpdate: next.Unix()})
	if err != nil {
		return nil, fmt.Errorf("pki: encode CRL: %w", err)
	}
	rawNum, _ := json.Marshal(number)
	err = b.store.Txn(ctx, []storage.Op{
		{Kind: storage.OpPut, Key: keyCRL, Value: rawCRL},
		{Kind: storage.OpPut, Key: keyCRLNumber, Value: rawNum},
	})
	if err != nil {
		return nil, fmt.Errorf("pki: store CRL: %w", err)
	}
	return der, nil
}

// cachedCRL returns the stored CRL if it is present and not yet due.
func (b *Backend) cachedCRL(ctx context.Context) ([]byte, bool, error) {
	raw, err := b.store.Get(ctx, keyCRL)
	if isNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("pki: read CRL: %w", err)
	}
	var rec crlRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, false, fmt.Errorf("pki: stored CRL: %w", err)
	}
	if b.clock().Unix() >= rec.NextUpdate {
		return nil, false, nil
	}
	return rec.DER, true, nil
}

// storageToHex turns a storage serial ("0a-1b") into plain hex.
func storageToHex(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			out = append(out, s[i])
		}
	}
	return string(out)
}

// readCert serves cert/:serial.
func (b *Backend) readCert(ctx context.Context, s string) (*logical.Response, error) {
	serial, err := parseSerial("serial", s)
	if err != nil {
		return nil, err
	}
	key := storageSerial(serial)
	data := map[string]any{"certificate": "", "revocation_time": int64(0), "revocation_time_rfc3339": ""}
	der, err := b.store.Get(ctx, prefixCert+key)
	found := err == nil
	switch {
	case err == nil:
		data["certificate"] = pemString("CERTIFICATE", der)
	case !isNotFound(err):
		return nil, fmt.Errorf("pki: read certificate %s: %w", serial, err)
	}
	raw, err := b.store.Get(ctx, prefixRev+key)
	switch {
	case err == nil:
		var rec revokedRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return nil, fmt.Errorf("pki: stored revocation %s: %w", serial, err)
		}
		data["revocation_time"] = rec.RevocationTime
		data["revocation_time_rfc3339"] = time.Unix(rec.RevocationTime, 0).UTC().Format(time.RFC3339Nano)
		found = true
	case !isNotFound(err):
		return nil, fmt.Errorf("pki: read revocation %s: %w", serial, err)
	}
	if !found {
		return nil, fmt.Errorf("%w: %s", ErrUnknownSerial, serial)
	}
	return &logical.Response{Data: data}, nil
}

// listCerts serves LIST certs and LIST certs/revoked (hyphenated serials).
func (b *Backend) listCerts(ctx context.Context, revoked bool) (*logical.Response, error) {
	prefix := prefixCert
	if revoked {
		prefix = prefixRev
	}
	keys, err := b.store.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("pki: list %s: %w", prefix, err)
	}
	return listResponse(keys)
}

// tidyBatch bounds the deletions in one storage transaction.
const tidyBatch = 256

// handleTidy serves tidy: tidy_cert_store removes stored certificates, and
// tidy_revoked_certs revocation records, whose certificate expired more than
// safety_buffer ago. It runs before answering (Vault runs it in the
// background) and answers 202 with the counts.
func (b *Backend) handleTidy(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	certs, _, err := logical.Bool(req.Data, "tidy_cert_store")
	if err != nil {
		return nil, err
	}
	revoked, _, err := logical.Bool(req.Data, "tidy_revoked_certs")
	if err != nil {
		return nil, err
	}
	buffer, err := readTTL(req.Data, "safety_buffer", DefaultTidySafetyBuffer)
	if err != nil {
		return nil, err
	}
	if !certs && !revoked {
		return nil, logical.InvalidRequest("field \"tidy_cert_store\": at least one of tidy_cert_store and tidy_revoked_certs must be true")
	}
	cutoff := b.clock().Add(-buffer).Unix()
	nCerts, nRev := 0, 0
	if certs {
		if nCerts, err = b.tidyCerts(ctx, cutoff); err != nil {
			return nil, err
		}
	}
	if revoked {
		if nRev, err = b.tidyRevoked(ctx, cutoff); err != nil {
			return nil, err
		}
	}
	b.log.Info("pki: tidy done", "certs_deleted", nCerts, "revoked_certs_deleted", nRev)
	return &logical.Response{StatusCode: 202,
		Warnings: append([]string{"Tidy operation successfully started. Any information from the operation will be printed to Vault's server logs."},
			fieldSet{"tidy_cert_store", "tidy_revoked_certs", "safety_buffer", "tidy_revoked_cert_issuer_associations", "tidy_expired_issuers"}.unknownWarnings(req.Data)...),
		Data: map[string]any{"cert_store_deleted_count": nCerts, "revoked_cert_deleted_count": nRev}}, nil
}

// tidyCerts deletes stored certificates that expired before cutoff.
func (b *Backend) tidyCerts(ctx context.Context, cutoff int64) (int, error) {
	names, err := b.store.List(ctx, prefixCert)
	if err != nil {
		return 0, fmt.Errorf("pki: tidy: list certificates: %w", err)
	}
	var ops []storage.Op
	n := 0
	for _, name := range names {
		der, err := b.store.Get(ctx, prefixCert+name)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("pki: tidy: read certificate %s: %w", name, err)
		}
		c, err := x509.ParseCertificate(der)
		if err == nil && c.NotAfter.Unix() >= cutoff {
			continue
		}
		ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: prefixCert + name})
		if len(ops) == tidyBatch {
			if err := b.store.Txn(ctx, ops); err != nil {
				return n, fmt.Errorf("pki: tidy: delete certificates: %w", err)
			}
			n += len(ops)
			ops = ops[:0]
		}
	}
	if len(ops) > 0 {
		if err := b.store.Txn(ctx, ops); err != nil {
			return n, fmt.Errorf("pki: tidy: delete certificates: %w", err)
		}
		n += len(ops)
	}
	return n, nil
}

// tidyRevoked deletes revocation records (and the certificates) of
// certificates that expired before cutoff, and invalidates the CRL.
func (b *Backend) tidyRevoked(ctx context.Context, cutoff int64) (int, error) {
	b.crlMu.RLock()
	defer b.crlMu.RUnlock()
	names, err := b.store.List(ctx, prefixRev)
	if err != nil {
		return 0, fmt.Errorf("pki: tidy: list revocations: %w", err)
	}
	var ops []storage.Op
	n := 0
	flush := func() error {
		ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: keyCRL})
		if err := b.store.Txn(ctx, ops); err != nil {
			return fmt.Errorf("pki: tidy: delete revocations: %w", err)
		}
		n += len(ops) / 2
		ops = ops[:0]
		return nil
	}
	for _, name := range names {
		raw, err := b.store.Get(ctx, prefixRev+name)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("pki: tidy: read revocation %s: %w", name, err)
		}
		var rec revokedRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return n, fmt.Errorf("pki: tidy: stored revocation %s: %w", name, err)
		}
		if rec.NotAfter == 0 || rec.NotAfter >= cutoff {
			continue
		}
		ops = append(ops, storage.Op{Kind: storage.OpDelete, Key: prefixRev + name},
			storage.Op{Kind: storage.OpDelete, Key: prefixCert + name})
		if len(ops) >= tidyBatch {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if len(ops) > 0 {
		if err := flush(); err != nil {
			return n, err
		}
	}
	return n, nil
}
