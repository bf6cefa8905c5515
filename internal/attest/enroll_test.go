package attest_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/attest"
	"github.com/edgevault/edgevault/internal/attest/jointoken"
	"github.com/edgevault/edgevault/internal/storage"
)

func TestEnrollRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		k := newKey(t)
		tok := e.token(t, "east", jointoken.Options{Labels: map[string]string{"site": "berlin-3"}}, t0)
		en, err := e.svc.Enroll(ctx, "east", tok, &k.PublicKey, t0.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		now := t0.Add(time.Minute)
		id := en.Agent.ID
		if err := attest.ValidateAgentID(id); err != nil || !strings.HasPrefix(id, "agent-") {
			t.Fatalf("agent ID %q: %v", id, err)
		}
		chain := parseChain(t, en.ChainPEM)
		if len(chain) != 2 {
			t.Fatalf("chain has %d certificates, want leaf + CA", len(chain))
		}
		leaf, ca := chain[0], chain[1]
		if !bytes.Equal(parseChain(t, en.CAPEM)[0].Raw, ca.Raw) || !bytes.Equal(en.Certificate.Raw, leaf.Raw) {
			t.Fatal("ChainPEM does not hold Certificate then CAPEM")
		}

		// Checked with crypto/x509 alone, as any relying party would.
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("x509 verify: %v", err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
			t.Fatal("agent certificate is accepted for serverAuth")
		}
		want := fmt.Sprintf("spiffe://%s/zone/east/agent/%s", td, id)
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
			t.Fatalf("URI SANs %v, want [%s]", leaf.URIs, want)
		}
		if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 || leaf.IsCA {
			t.Fatal("leaf has other SANs or is a CA")
		}
		if !leaf.NotBefore.Equal(now.Add(-5*time.Minute)) || !leaf.NotAfter.Equal(now.Add(time.Hour)) {
			t.Fatalf("validity %s..%s, want now-5m..now+1h", leaf.NotBefore, leaf.NotAfter)
		}
		if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&k.PublicKey) {
			t.Fatal("certificate key is not the agent's key")
		}
		if !ca.IsCA || !ca.MaxPathLenZero || len(ca.PermittedURIDomains) != 1 || ca.PermittedURIDomains[0] != td {
			t.Fatalf("CA constraints: IsCA=%v MaxPathLenZero=%v URI domains=%v", ca.IsCA, ca.MaxPathLenZero, ca.PermittedURIDomains)
		}
		if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() < 120 {
			t.Fatalf("serial %x is not a positive ~128-bit number", leaf.SerialNumber)
		}

		a, err := e.svc.Authorize(ctx, chain, now)
		if err != nil {
			t.Fatal(err)
		}
		if a.ID != id || a.Zone != "east" || a.Method != attest.MethodJoinToken || a.Strength != attest.StrengthWeak ||
			a.Status != attest.StatusActive || a.CertSerial != leaf.SerialNumber.Text(16) || !a.CertNotAfter.Equal(leaf.NotAfter) ||
			a.Claims["site"] != "berlin-3" || a.Claims["token_id"] != jointoken.ID(tok) {
			t.Fatalf("agent record %+v", a)
		}
		got, err := e.svc.Agents().Get(ctx, "east", id)
		if err != nil || got.CertSerial != a.CertSerial {
			t.Fatalf("registry Get: %+v, %v", got, err)
		}

		// The CA key and the records are stored, encrypted, in the zone.
		for _, needle := range []string{"cert_serial", "berlin-3", id, "PRIVATE"} {
			if k := findPlain(t, e, needle); k != "" {
				t.Fatalf("%q is stored in plaintext at %q", needle, k)
			}
		}

		// A restarted server reloads the same CA and accepts the certificate.
		e.reopen(t)
		if _, err := e.svc.Authorize(ctx, chain, now); err != nil {
			t.Fatalf("after restart: %v", err)
		}
		en2, _ := e.enroll(t, "east", now)
		if !bytes.Equal(en2.CAPEM, en.CAPEM) {
			t.Fatal("restarted server made a new CA for the zone")
		}
	})
}

// findPlain returns a raw storage key whose value contains needle.
func findPlain(t *testing.T, e *env, needle string) string {
	t.Helper()
	var walk func(prefix string) string
	walk = func(prefix string) string {
		names, err := e.raw.List(t.Context(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if strings.HasSuffix(n, "/") {
				if k := walk(prefix + n); k != "" {
					return k
				}
				continue
			}
			v, err := e.raw.Get(t.Context(), prefix+n)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(v, []byte(needle)) {
				return prefix + n
			}
		}
		return ""
	}
	return walk("")
}

func TestEnrollMTLS(t *testing.T) {
	e := newEnv(t, backends()["bolt"](t))
	ctx := t.Context()
	en, k := e.enroll(t, "west", time.Now())
	ca, err := e.svc.CA(ctx, "west", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if ca.Zone() != "west" {
		t.Fatalf("CA zone %q", ca.Zone())
	}
	pool, err := e.svc.ClientCAs(ctx, []string{"", "east", "west"})
	if err != nil {
		t.Fatal(err)
	}
	serverKey := newKey(t)
	serverTmpl := &x509.Certificate{SerialNumber: bigOne(), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	serverDER, err := x509.CreateCertificate(rand.Reader, serverTmpl, serverTmpl, &serverKey.PublicKey, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, _ := x509.ParseCertificate(serverDER)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS13,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	result := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			result <- err
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.HandshakeContext(ctx); err != nil {
			result <- err
			return
		}
		a, err := e.svc.Authorize(ctx, tc.ConnectionState().PeerCertificates, time.Now())
		if err == nil && a.ID != en.Agent.ID {
			err = fmt.Errorf("authorized %q, want %q", a.ID, en.Agent.ID)
		}
		result <- err
	}()
	roots := x509.NewCertPool()
	roots.AddCert(serverCert)
	cc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{en.Certificate.Raw, ca.Certificate().Raw}, PrivateKey: k}},
		RootCAs:      roots,
		ServerName:   "localhost",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := <-result; err != nil {
		t.Fatalf("server side: %v", err)
	}
}

func TestTokenReplay(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		tok := e.token(t, "east", jointoken.Options{}, t0)
		k := newKey(t)
		first, err := e.svc.Enroll(ctx, "east", tok, &k.PublicKey, t0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.Enroll(ctx, "east", tok, &newKey(t).PublicKey, t0.Add(time.Second))
		if !errors.Is(err, attest.ErrTokenUsed) {
			t.Fatalf("replay: %v, want ErrTokenUsed", err)
		}
		if strings.Contains(err.Error(), tok) {
			t.Fatal("error message quotes the token")
		}
		agents, err := e.svc.Agents().List(ctx, "east")
		if err != nil || len(agents) != 1 || agents[0].ID != first.Agent.ID {
			t.Fatalf("agents after replay: %+v, %v", agents, err)
		}
	})
}

func TestTokenExpiry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		late := e.token(t, "east", jointoken.Options{}, t0)
		if _, err := e.svc.Enroll(ctx, "east", late, &newKey(t).PublicKey, t0.Add(jointoken.DefaultTTL)); !errors.Is(err, attest.ErrTokenExpired) {
			t.Fatalf("at expiry: %v, want ErrTokenExpired", err)
		}
		justInTime := e.token(t, "east", jointoken.Options{}, t0)
		if _, err := e.svc.Enroll(ctx, "east", justInTime, &newKey(t).PublicKey, t0.Add(jointoken.DefaultTTL-time.Second)); err != nil {
			t.Fatalf("one second before expiry: %v", err)
		}
		long := e.token(t, "east", jointoken.Options{TTL: 2 * time.Hour}, t0)
		if _, err := e.svc.Enroll(ctx, "east", long, &newKey(t).PublicKey, t0.Add(90*time.Minute)); err != nil {
			t.Fatalf("custom TTL: %v", err)
		}
		if _, _, err := e.svc.CreateJoinToken(ctx, "east", jointoken.Options{TTL: jointoken.MaxTTL + time.Second}, t0); !errors.Is(err, jointoken.ErrInvalidOptions) {
			t.Fatalf("TTL over the maximum: %v", err)
		}
	})
}

func TestTokenWrongZone(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		west := e.token(t, "west", jointoken.Options{}, t0)
		if _, err := e.svc.Enroll(ctx, "east", west, &newKey(t).PublicKey, t0); !errors.Is(err, attest.ErrTokenZone) {
			t.Fatalf("west token in east: %v, want ErrTokenZone", err)
		}
		// Editing the label does not move the token: it is unknown.
		forged := strings.Replace(west, ".west.", ".east.", 1)
		if _, err := e.svc.Enroll(ctx, "east", forged, &newKey(t).PublicKey, t0); !errors.Is(err, attest.ErrTokenUnknown) {
			t.Fatalf("relabelled token: %v, want ErrTokenUnknown", err)
		}
		for _, bad := range []string{"", "evjt", "evjt.east.", "evjt.east.abc", "hvs.AAAA", west + "x"} {
			if _, err := e.svc.Enroll(ctx, "east", bad, &newKey(t).PublicKey, t0); !errors.Is(err, attest.ErrTokenUnknown) {
				t.Fatalf("token %q: %v, want ErrTokenUnknown", bad, err)
			}
		}
		// The failed attempts did not spend the token in its own zone.
		if _, err := e.svc.Enroll(ctx, "west", west, &newKey(t).PublicKey, t0); err != nil {
			t.Fatalf("west token in west: %v", err)
		}
		// The root zone works too, labelled "root".
		root := e.token(t, "", jointoken.Options{}, t0)
		if !strings.HasPrefix(root, "evjt.root.") {
			t.Fatalf("root zone token %q", root[:10])
		}
		en, err := e.svc.Enroll(ctx, "", root, &newKey(t).PublicKey, t0)
		if err != nil {
			t.Fatal(err)
		}
		if u := en.Certificate.URIs[0].String(); !strings.HasPrefix(u, "spiffe://"+td+"/zone/root/agent/") {
			t.Fatalf("root zone SPIFFE ID %s", u)
		}
	})
}

func TestConcurrentRedemption(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		for round := range 5 {
			tok := e.token(t, "east", jointoken.Options{}, t0)
			const n = 16
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					_, errs[i] = e.svc.Enroll(ctx, "east", tok, &newKey(t).PublicKey, t0)
				})
			}
			wg.Wait()
			wins := 0
			for _, err := range errs {
				switch {
				case err == nil:
					wins++
				case !errors.Is(err, attest.ErrTokenUsed):
					t.Fatalf("round %d: loser got %v, want ErrTokenUsed", round, err)
				}
			}
			if wins != 1 {
				t.Fatalf("round %d: %d redemptions succeeded, want exactly 1", round, wins)
			}
		}
		agents, err := e.svc.Agents().List(ctx, "east")
		if err != nil || len(agents) != 5 {
			t.Fatalf("%d agents, want 5 (one per token): %v", len(agents), err)
		}
	})
}

func TestCrossZoneCertificateRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		west, _ := e.enroll(t, "west", t0)
		e.enroll(t, "east", t0) // east has a CA too
		eastCA, err := e.svc.CA(ctx, "east", t0)
		if err != nil {
			t.Fatal(err)
		}
		westChain := parseChain(t, west.ChainPEM)
		if _, err := eastCA.Verify(westChain, t0); !errors.Is(err, attest.ErrCertZone) {
			t.Fatalf("west cert at east CA: %v, want ErrCertZone", err)
		}
		// Authorize checks the west cert against west's CA, so it passes...
		if _, err := e.svc.Authorize(ctx, westChain, t0); err != nil {
			t.Fatal(err)
		}
		// ...and a cert naming east but signed by west's CA fails, as does
		// one from a stranger CA.
		westCA, _ := e.svc.CA(ctx, "west", t0)
		forged := forgeLeaf(t, westCA.Certificate(), "east", "mallory")
		if _, err := e.svc.Authorize(ctx, []*x509.Certificate{forged}, t0); !errors.Is(err, attest.ErrCertZone) {
			t.Fatalf("east-named cert from a foreign CA: %v, want ErrCertZone", err)
		}
		if _, err := eastCA.Verify([]*x509.Certificate{forged, westCA.Certificate()}, t0); !errors.Is(err, attest.ErrCertZone) {
			t.Fatalf("foreign chain passed as intermediates: %v, want ErrCertZone", err)
		}
		other := forgeLeaf(t, nil, "east", "mallory")
		other.URIs[0].Host = "other.test"
		if _, err := e.svc.Authorize(ctx, []*x509.Certificate{other}, t0); !errors.Is(err, attest.ErrCertZone) {
			t.Fatalf("other trust domain: %v, want ErrCertZone", err)
		}
		// A zone without a CA is not given one by Authorize.
		if _, err := e.svc.Authorize(ctx, []*x509.Certificate{forgeLeaf(t, nil, "", "x")}, t0); !errors.Is(err, attest.ErrNoCA) {
			t.Fatalf("zone without CA: %v, want ErrNoCA", err)
		}
	})
}

// forgeLeaf makes a clientAuth leaf for zone/agent signed by a fresh
// stranger CA whose certificate copies the subject of like (so it looks
// like that zone CA).
func forgeLeaf(t *testing.T, like *x509.Certificate, z, id string) *x509.Certificate {
	t.Helper()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{SerialNumber: bigOne(), NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	if like != nil {
		caTmpl.Subject = like.Subject
	}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	name := attest.AgentName{TrustDomain: td, Zone: z, ID: id}
	leafTmpl := &x509.Certificate{SerialNumber: bigOne(), NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, URIs: []*url.URL{name.URI()}}
	k := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return leaf
}

func TestQuarantineRevokeDelete(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		reg := e.svc.Agents()
		en, _ := e.enroll(t, "east", t0)
		chain := []*x509.Certificate{en.Certificate}
		id := en.Agent.ID
		if _, err := reg.SetStatus(ctx, "east", id, attest.StatusQuarantined, "alert: disk tamper", t0); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Authorize(ctx, chain, t0); !errors.Is(err, attest.ErrAgentQuarantined) {
			t.Fatalf("quarantined: %v", err)
		}
		if _, err := e.svc.Renew(ctx, chain, &newKey(t).PublicKey, t0, nil); !errors.Is(err, attest.ErrAgentQuarantined) {
			t.Fatalf("renew while quarantined: %v", err)
		}
		a, err := reg.SetStatus(ctx, "east", id, attest.StatusActive, "", t0)
		if err != nil || a.Status != attest.StatusActive {
			t.Fatal(err)
		}
		if _, err := e.svc.Authorize(ctx, chain, t0); err != nil {
			t.Fatalf("released from quarantine: %v", err)
		}
		if _, err := reg.SetStatus(ctx, "east", id, attest.StatusRevoked, "stolen", t0); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Authorize(ctx, chain, t0); !errors.Is(err, attest.ErrAgentRevoked) {
			t.Fatalf("revoked: %v", err)
		}
		if _, err := reg.SetStatus(ctx, "east", id, attest.StatusActive, "", t0); !errors.Is(err, attest.ErrAgentRevoked) {
			t.Fatalf("un-revoke: %v, want ErrAgentRevoked", err)
		}
		if _, err := reg.SetStatus(ctx, "east", id, "sleepy", "", t0); !errors.Is(err, attest.ErrInvalidConfig) {
			t.Fatalf("bad status: %v", err)
		}
		// A token naming the revoked ID cannot bring it back, and is spent.
		named := e.token(t, "east", jointoken.Options{AgentID: id}, t0)
		if _, err := e.svc.Enroll(ctx, "east", named, &newKey(t).PublicKey, t0); !errors.Is(err, attest.ErrAgentRevoked) {
			t.Fatalf("re-enroll revoked ID: %v", err)
		}
		if err := reg.Delete(ctx, "east", id); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Authorize(ctx, chain, t0); !errors.Is(err, attest.ErrAgentUnknown) {
			t.Fatalf("deleted: %v", err)
		}
		if _, err := reg.Get(ctx, "east", id); !errors.Is(err, attest.ErrAgentUnknown) {
			t.Fatalf("Get deleted: %v", err)
		}
		// After delete the operator can enroll the name again.
		again := e.token(t, "east", jointoken.Options{AgentID: id}, t0)
		en2, err := e.svc.Enroll(ctx, "east", again, &newKey(t).PublicKey, t0)
		if err != nil || en2.Agent.ID != id {
			t.Fatalf("re-enroll after delete: %+v, %v", en2.Agent, err)
		}
		if _, err := e.svc.Authorize(ctx, chain, t0); !errors.Is(err, attest.ErrCertSuperseded) {
			t.Fatalf("old certificate after re-enrollment: %v, want ErrCertSuperseded", err)
		}
	})
}

func TestClockSkew(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		// A token made on a server whose clock is 5 minutes ahead.
		ahead := e.token(t, "east", jointoken.Options{}, t0.Add(5*time.Minute))
		en, err := e.svc.Enroll(ctx, "east", ahead, &newKey(t).PublicKey, t0)
		if err != nil {
			t.Fatalf("token from 5 min in the future: %v", err)
		}
		tooFar := e.token(t, "east", jointoken.Options{}, t0.Add(5*time.Minute+time.Second))
		if _, err := e.svc.Enroll(ctx, "east", tooFar, &newKey(t).PublicKey, t0); !errors.Is(err, jointoken.ErrTokenNotYetValid) {
			t.Fatalf("token from 5m01s in the future: %v", err)
		}
		chain := []*x509.Certificate{en.Certificate}
		ca, _ := e.svc.CA(ctx, "east", t0)
		roots := ca.Pool()
		cases := []struct {
			at   time.Duration
			want error
		}{
			{-5 * time.Minute, nil},
			{-5*time.Minute - time.Second, attest.ErrCertNotYetValid},
			{5 * time.Minute, nil},
			{time.Hour, nil},
			{time.Hour + time.Second, attest.ErrCertExpired},
		}
		for _, c := range cases {
			now := t0.Add(c.at)
			_, err := e.svc.Authorize(ctx, chain, now)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Errorf("Authorize at issue%+v: %v, want %v", c.at, err, c.want)
			}
			// The agent checking its own certificate with its own clock.
			_, err = en.Certificate.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			if (err == nil) != (c.want == nil) {
				t.Errorf("x509 verify at issue%+v: %v", c.at, err)
			}
		}
	})
}

func TestRenew(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		en, _ := e.enroll(t, "east", t0)
		old := []*x509.Certificate{en.Certificate}
		k2 := newKey(t)
		later := t0.Add(40 * time.Minute)
		re, err := e.svc.Renew(ctx, old, &k2.PublicKey, later, nil)
		if err != nil {
			t.Fatal(err)
		}
		if re.Agent.ID != en.Agent.ID || !re.Certificate.NotAfter.Equal(later.Add(time.Hour)) || !re.Agent.LastSeen.Equal(later) {
			t.Fatalf("renewed: %+v", re.Agent)
		}
		if _, err := e.svc.Authorize(ctx, old, later); !errors.Is(err, attest.ErrCertSuperseded) {
			t.Fatalf("old cert after renewal: %v", err)
		}
		// The answer to the renewal was lost: the old certificate may renew
		// again while the new one is unused...
		re, err = e.svc.Renew(ctx, old, &k2.PublicKey, later, nil)
		if err != nil {
			t.Fatalf("renew again with the old cert before the new one is used: %v", err)
		}
		if _, err := e.svc.Authorize(ctx, []*x509.Certificate{re.Certificate}, later); err != nil {
			t.Fatal(err)
		}
		// ...and not once the new one was used.
		if _, err := e.svc.Renew(ctx, old, &k2.PublicKey, later, nil); !errors.Is(err, attest.ErrCertSuperseded) {
			t.Fatalf("renew with the old cert after the new one was used: %v", err)
		}
		// Expired while cut off: renewable within the grace (30 days)...
		back := later.Add(3 * 24 * time.Hour)
		re2, err := e.svc.Renew(ctx, []*x509.Certificate{re.Certificate}, &k2.PublicKey, back, nil)
		if err != nil {
			t.Fatalf("renew 3 days after expiry: %v", err)
		}
		if !re2.Certificate.NotAfter.Equal(back.Add(time.Hour)) {
			t.Fatalf("renewed after expiry until %s", re2.Certificate.NotAfter)
		}
		// ...not beyond it.
		if _, err := e.svc.Renew(ctx, []*x509.Certificate{re2.Certificate}, &k2.PublicKey, back.Add(31*24*time.Hour), nil); !errors.Is(err, attest.ErrCertExpired) {
			t.Fatalf("renew 31 days after expiry: %v", err)
		}
	})
}

func TestBadKeyDoesNotSpendToken(t *testing.T) {
	e := newEnv(t, backends()["inmem"](t))
	ctx := t.Context()
	tok := e.token(t, "east", jointoken.Options{}, t0)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, pub := range map[string]any{"rsa": &rsaKey.PublicKey, "p384": &p384.PublicKey, "nil": nil} {
		if _, err := e.svc.Enroll(ctx, "east", tok, pub, t0); !errors.Is(err, attest.ErrInvalidKey) {
			t.Fatalf("%s key: %v, want ErrInvalidKey", name, err)
		}
	}
	if _, err := e.svc.Enroll(ctx, "east", tok, &newKey(t).PublicKey, t0); err != nil {
		t.Fatalf("token after refused keys: %v", err)
	}
}

func TestParseCSR(t *testing.T) {
	k := newKey(t)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := attest.ParseCSR(der)
	if err != nil || !pub.Equal(&k.PublicKey) {
		t.Fatalf("ParseCSR: %v", err)
	}
	bad := bytes.Clone(der)
	bad[len(bad)-3] ^= 1 // inside the signature
	if _, err := attest.ParseCSR(bad); !errors.Is(err, attest.ErrInvalidKey) {
		t.Fatalf("tampered CSR: %v", err)
	}
	if _, err := attest.ParseCSR([]byte("junk")); !errors.Is(err, attest.ErrInvalidKey) {
		t.Fatalf("junk CSR: %v", err)
	}
}

func TestAckWatermark(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		en, _ := e.enroll(t, "east", t0)
		reg := e.svc.Agents()
		for i, seq := range []uint64{5, 9, 7} {
			if _, err := reg.Ack(ctx, "east", en.Agent.ID, seq, t0.Add(time.Duration(i)*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		a, err := reg.Get(ctx, "east", en.Agent.ID)
		if err != nil || a.AckedSeq != 9 || !a.LastSeen.Equal(t0.Add(2*time.Second)) {
			t.Fatalf("after acks 5, 9, 7: acked %d last seen %s, %v", a.AckedSeq, a.LastSeen, err)
		}
		if _, err := reg.Ack(ctx, "east", "nobody", 1, t0); !errors.Is(err, attest.ErrAgentUnknown) {
			t.Fatalf("ack unknown agent: %v", err)
		}
		if _, err := reg.Update(ctx, "east", en.Agent.ID, func(a *attest.Agent) error { a.Zone = "west"; return nil }); err == nil {
			t.Fatal("Update moved an agent to another zone")
		}
	})
}

func TestConfigValidation(t *testing.T) {
	stores := func(string) (storage.Backend, error) { return nil, errors.New("unused") }
	for name, cfg := range map[string]attest.Config{
		"no trust domain":  {Stores: stores},
		"bad trust domain": {TrustDomain: "Edge Vault", Stores: stores},
		"no stores":        {TrustDomain: td},
		"cert TTL":         {TrustDomain: td, Stores: stores, CertTTL: 48 * time.Hour},
		"skew":             {TrustDomain: td, Stores: stores, ClockSkew: -time.Second},
	} {
		if _, err := attest.New(cfg); !errors.Is(err, attest.ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}

func bigOne() *big.Int { return big.NewInt(1) }

func TestParseAgentName(t *testing.T) {
	good := "spiffe://" + td + "/zone/east/agent/node-1"
	u, _ := url.Parse(good)
	n, err := attest.ParseAgentName(u)
	if err != nil || n != (attest.AgentName{TrustDomain: td, Zone: "east", ID: "node-1"}) || n.String() != good {
		t.Fatalf("%q: %+v, %v", good, n, err)
	}
	for _, bad := range []string{
		"https://" + td + "/zone/east/agent/node-1",
		"spiffe://" + td + "/zone/east/agent/node-1?x=1",
		"spiffe://" + td + ":443/zone/east/agent/node-1",
		"spiffe://" + td + "/zone/east/agent/node-1/extra",
		"spiffe://" + td + "/zone/east/agents/node-1",
		"spiffe://" + td + "/zone//agent/node-1",
		"spiffe://" + td + "/zone/East/agent/node-1",
		"spiffe://" + td + "/zone/east/agent/-node",
		"spiffe://" + td + "/zone/%65ast/agent/node-1",
		"spiffe:///zone/east/agent/node-1",
	} {
		u, err := url.Parse(bad)
		if err != nil {
			continue
		}
		if _, err := attest.ParseAgentName(u); !errors.Is(err, attest.ErrCertInvalid) {
			t.Errorf("%q: %v, want ErrCertInvalid", bad, err)
		}
	}
}
