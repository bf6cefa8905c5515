package agent

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/edgevault/edgevault/internal/agent/cache"
	"github.com/edgevault/edgevault/internal/syncproto"
)

// identity.pem is read at every start: any content is refused or parsed,
// never a panic, and what parses round-trips.
func FuzzParseIdentity(f *testing.F) {
	k, _ := newKey()
	keyOnly, _ := encodeIdentity(k, nil)
	f.Add(keyOnly)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("not pem"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		id, err := parseIdentity(raw, testZone)
		if err != nil {
			return
		}
		var chain [][]byte
		if id.cert != nil {
			chain = id.cert.Certificate
			if _, err := x509.ParseCertificate(chain[0]); err != nil {
				t.Fatal(err)
			}
		}
		again, err := encodeIdentity(id.key, chain)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseIdentity(again, testZone); err != nil {
			t.Fatalf("re-encoded identity does not parse: %v", err)
		}
	})
}

// Stream events are hostile input: whatever event the stream decoder
// accepts, applying it never panics, never fails on the event's content
// (a bad upsert drops its path), and an upsert that is kept is served as
// sent.
func FuzzApplyEvent(f *testing.F) {
	for _, ev := range []syncproto.Event{
		upsert(1, "secret/app/db", 1, "v1"),
		{Seq: 1, Kind: syncproto.Delete, Path: "secret/app/db"},
		{Seq: 1, Kind: syncproto.Revoke, Path: "secret/"},
		{Seq: 1, Kind: syncproto.Lease, Path: "secret/app/db", MaxStale: 5},
		{Seq: 1, Kind: syncproto.Resync},
	} {
		raw, _ := json.Marshal(ev)
		f.Add(raw)
	}
	c := openTestCache(f)
	a := &applier{c: c, log: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := syncproto.DecodeEvent(raw)
		if err != nil || ev.Kind == syncproto.Heartbeat {
			return
		}
		if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
		ev.Seq = 1
		if _, err := a.apply([]syncproto.Event{upsert(1, "secret/app/db", 1, "v1")}); err != nil {
			t.Fatal(err)
		}
		ev.Seq = 2
		_, err = a.apply([]syncproto.Event{ev})
		if err != nil {
			// Only what the cache checks beyond parseUpsert (timestamps,
			// path rules) may refuse a batch.
			if !errors.Is(err, cache.ErrInvalidOp) {
				t.Fatalf("apply %+v: %v", ev, err)
			}
			return
		}
		if ev.Kind == syncproto.Upsert {
			sr, perr := parseUpsert(&ev)
			e, gerr := c.Get(ev.Path, ev.Version)
			if perr == nil && (gerr != nil || string(e.Data) != string(sr.Data)) {
				t.Fatalf("kept upsert %+v: %v %s", ev, gerr, e.Data)
			}
		}
	})
}

// A local request can never address the agent's internal metadata
// entries: the paths it reads never start with metaPrefix.
func FuzzKVPath(f *testing.F) {
	for _, p := range []string{"/v1/secret/data/app/db", "/v1/secret/metadata/a", "/v1//data/x", "/v1/sys/health", "/v1/x/data//metadata/y"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		mount, kind, key, ok := kvPath(p)
		if !ok {
			return
		}
		path := mount + "/" + key
		if strings.HasPrefix(path, "/") || strings.Contains(mount, "/") || key == "" || (kind != "data" && kind != "metadata") {
			t.Fatalf("kvPath(%q) = %q %q %q", p, mount, kind, key)
		}
	})
}
