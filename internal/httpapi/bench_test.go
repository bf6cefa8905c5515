package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/edgevault/edgevault/internal/audit"
	"github.com/edgevault/edgevault/internal/httpapi"
	"github.com/edgevault/edgevault/internal/storage/inmem"
)

// BenchmarkKVRead measures the server's own cost of one authenticated KV v2
// read (routing, token, policy, engine, envelope) without the network.
func BenchmarkKVRead(b *testing.B) { benchKVRead(b, httpapi.AuditConfig{}) }

// BenchmarkKVReadAudited is BenchmarkKVRead with both audit devices (a file
// and the transparency log) in a temp dir: the difference is the audit cost.
func BenchmarkKVReadAudited(b *testing.B) {
	dir := b.TempDir()
	benchKVRead(b, httpapi.AuditConfig{Devices: []audit.DeviceConfig{
		{Path: "file", Type: audit.TypeFile, Options: map[string]string{"file_path": filepath.Join(dir, "audit.log")}},
		{Path: "log", Type: audit.TypeLog, Options: map[string]string{"path": filepath.Join(dir, "audit-log")}},
	}})
}

func benchKVRead(b *testing.B, ac httpapi.AuditConfig) {
	srv, err := httpapi.New(httpapi.Config{Physical: inmem.New(), Audit: ac})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	root, _, err := srv.InitDev(context.Background(), "")
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	put := httptest.NewRequest("POST", "/v1/secret/data/bench/1", stringsReader(`{"data":{"value":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}`))
	put.Header.Set("X-Vault-Token", root)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, put)
	if rec.Code != http.StatusOK {
		b.Fatalf("put: %d %s", rec.Code, rec.Body)
	}
	b.ReportAllocs()
	// 16 concurrent readers, as the c=16 figures in BENCHMARKS.md.
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "/v1/secret/data/bench/1", nil)
		req.Header.Set("X-Vault-Token", root)
		for pb.Next() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Errorf("read: %d", rec.Code)
				return
			}
		}
	})
}

func stringsReader(s string) *stringReader { return &stringReader{s: s} }

type stringReader struct{ s string }

func (r *stringReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := copy(p, r.s)
	r.s = r.s[n:]
	return n, nil
}

// BenchmarkKVWrite measures the server's own cost of one authenticated KV v2
// write over an in-memory store (no fsync): what a durable write costs on
// top of the storage commit.
func BenchmarkKVWrite(b *testing.B) {
	srv, err := httpapi.New(httpapi.Config{Physical: inmem.New()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	root, _, err := srv.InitDev(context.Background(), "")
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	const body = `{"data":{"value":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}`
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		req := httptest.NewRequest("POST", "/v1/secret/data/bench/"+strconv.Itoa(i%1000), stringsReader(body))
		req.Header.Set("X-Vault-Token", root)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("write: %d %s", rec.Code, rec.Body)
		}
		i++
	}
}
