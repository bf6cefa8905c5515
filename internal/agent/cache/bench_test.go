package cache

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgevault/edgevault/internal/agent/cache/keyfile"
)

// secret1K is a 1 KiB KV data object.
func secret1K(i int) json.RawMessage {
	head := fmt.Sprintf(`{"id":"%06d","password":"`, i)
	return json.RawMessage(head + strings.Repeat("x", 1024-len(head)-2) + `"}`)
}

func upsert1K(i int) Op { return upsert1KVersion(i, 1) }

func upsert1KVersion(i, version int) Op {
	return Op{Kind: OpUpsert, Path: fmt.Sprintf("app/service-%05d/db", i), Version: version, Data: secret1K(i),
		Metadata: json.RawMessage(fmt.Sprintf(`{"created_time":"2026-11-26T12:00:00.123456789Z","custom_metadata":null,"deletion_time":"","destroyed":false,"version":%d}`, version)),
		MaxStale: time.Hour}
}

// build10k writes a cache of n 1 KiB entries in batches of 500.
func build10k(tb testing.TB, dir string, n int) (string, *keyfile.Protector) {
	tb.Helper()
	kp, err := keyfile.Open(filepath.Join(dir, "cache.key"))
	if err != nil {
		tb.Fatal(err)
	}
	file := filepath.Join(dir, "cache.db")
	c, err := Open(file, kp, Options{Zone: "edge-1"})
	if err != nil {
		tb.Fatal(err)
	}
	for seq := 0; seq*500 < n; seq++ {
		ops := make([]Op, 0, 500)
		for i := seq * 500; i < min(n, (seq+1)*500); i++ {
			ops = append(ops, upsert1K(i))
		}
		if err := c.Apply(uint64(seq+1), ops); err != nil {
			tb.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		tb.Fatal(err)
	}
	if fi, err := os.Stat(file); err == nil {
		tb.Logf("cache file of %d entries: %.1f MiB", n, float64(fi.Size())/(1<<20))
	}
	return file, kp
}

// BenchmarkGet reads 1 KiB secrets from 16 goroutines (Go's parallelism
// is a multiple of GOMAXPROCS), spread over 10,000 paths or all on one.
func BenchmarkGet(b *testing.B) {
	file, kp := build10k(b, b.TempDir(), 10_000)
	c, err := Open(file, kp, Options{Zone: "edge-1"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	all := make([]string, 10_000)
	for i := range all {
		all[i] = upsert1K(i).Path
	}
	for name, paths := range map[string][]string{"keys=10000": all, "keys=1": all[:1]} {
		b.Run(name, func(b *testing.B) {
			b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			var next atomic.Uint64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(7919))
				for pb.Next() {
					i++
					e, err := c.Get(paths[i%len(paths)], 0)
					if err != nil || len(e.Data) != 1024 {
						b.Errorf("get: %v (%d bytes)", err, len(e.Data))
						return
					}
				}
			})
		})
	}
}

// BenchmarkDecryptOnRead is the alternative design (keep ciphertext, open
// it per read with a cached AEAD), measured the same way, for comparison.
func BenchmarkDecryptOnRead(b *testing.B) {
	block, _ := aes.NewCipher(bytes.Repeat([]byte{1}, 32))
	aead, _ := cipher.NewGCM(block)
	ad := appendAD(nil, kindVersion, "edge-1", "app/service-00001/db", 1)
	rec := versionRec{data: secret1K(1), meta: upsert1K(1).Metadata}
	env := seal(aead, ad, rec.encode())
	b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			pt, err := open(aead, ad, env)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := decodeVersion(pt); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkOpen10k measures the start of an agent on a 10,000-entry cache.
func BenchmarkOpen10k(b *testing.B) {
	file, kp := build10k(b, b.TempDir(), 10_000)
	b.ResetTimer()
	for b.Loop() {
		c, err := Open(file, kp, Options{Zone: "edge-1"})
		if err != nil {
			b.Fatal(err)
		}
		if st := c.Stats(); st.Entries != 10_000 || st.Watermark == 0 {
			b.Fatalf("stats %+v", st)
		}
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/open")
}

// BenchmarkApply measures durable batches of 1 and 64 upserts of 1 KiB.
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			file, kp := build10k(b, b.TempDir(), 10_000)
			c, err := Open(file, kp, Options{Zone: "edge-1"})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			seq := c.Watermark()
			ops := make([]Op, n)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				for j := range ops {
					ops[j] = upsert1KVersion((i*n+j)%10_000, 2+i)
				}
				seq++
				if err := c.Apply(seq, ops); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "upserts/s")
		})
	}
}

const memChildEnv = "EDGEVAULT_CACHE_MEM_CHILD"

// BenchmarkMemory10k opens a 10,000 x 1 KiB cache in a fresh process and
// reports that process's RSS and live heap, so the test framework and the
// building of the file are not counted.
func BenchmarkMemory10k(b *testing.B) {
	dir := b.TempDir()
	build10k(b, dir, 10_000)
	var rss, heap, base float64
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), memChildEnv+"="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("child: %v\n%s", err, out)
		}
		for line := range strings.Lines(string(out)) {
			var k string
			var v float64
			if n, _ := fmt.Sscanf(line, "MEM %s %g", &k, &v); n == 2 {
				switch k {
				case "rss":
					rss = v
				case "heap":
					heap = v
				case "base_rss":
					base = v
				}
			}
		}
	}
	b.ReportMetric(base, "base-rss-MiB")
	b.ReportMetric(rss, "rss-MiB")
	b.ReportMetric(heap, "heap-MiB")
}

// TestMemoryChild is BenchmarkMemory10k's child process; it does nothing
// in a normal test run.
func TestMemoryChild(t *testing.T) {
	dir := os.Getenv(memChildEnv)
	if dir == "" {
		t.Skip("only run by BenchmarkMemory10k")
	}
	runtime.GC()
	base := vmRSS(t)
	kp, err := keyfile.Open(filepath.Join(dir, "cache.key"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(filepath.Join(dir, "cache.db"), kp, Options{Zone: "edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("MEM base_rss %.1f\nMEM rss %.1f\nMEM heap %.1f\n", base, vmRSS(t), float64(ms.HeapAlloc)/(1<<20))
	runtime.KeepAlive(c)
	_ = c.Close()
}

// vmRSS returns this process's resident set in MiB.
func vmRSS(t *testing.T) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc")
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
