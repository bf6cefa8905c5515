package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAgentPropagation measures, with real processes, how long a
// secret written on the server takes to be served by an online agent:
// from the write's acknowledgement to the first local read returning it.
// go test -run '^$' -bench AgentPropagation -benchtime 200x ./cmd/edgevault
func BenchmarkAgentPropagation(b *testing.B) {
	r := newEdgeRig(b)
	kv := r.z.KVv2("secret")
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		v := "v" + strconv.Itoa(i)
		if _, err := kv.Put(b.Context(), "app/db", map[string]any{"password": v}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for {
			code, _, body, _ := agentGet(b, r.agentAddr, r.tok, "secret/data/app/db")
			if code == 200 && password(body) == v {
				break
			}
			if time.Since(start) > 10*time.Second {
				b.Fatalf("write %d not in the agent after 10s", i)
			}
			time.Sleep(200 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// BenchmarkAgent10k fills the agent's cache with 10,000 secrets of 1 KiB
// through the server, then reports the agent's RSS, and the time a fresh
// agent process takes to serve from that cache with the server down.
// go test -run '^$' -bench Agent10k -benchtime 1x ./cmd/edgevault
func BenchmarkAgent10k(b *testing.B) {
	r := newEdgeRig(b)
	value := strings.Repeat("x", 1024)
	const n, writers = 10000, 16
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kv := r.z.KVv2("secret")
			for i := w; i < n; i += writers {
				if _, err := kv.Put(b.Context(), fmt.Sprintf("app/s%05d", i), map[string]any{"password": value}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(b, "10,000 secrets in the agent", func() bool {
		code, _, body, _ := agentGet(b, r.agentAddr, r.tok, fmt.Sprintf("secret/data/app/s%05d", n-1))
		if code != 200 {
			return false
		}
		_ = body
		for _, i := range []int{0, n / 2, n - 2} {
			if code, _, _, _ := agentGet(b, r.agentAddr, r.tok, fmt.Sprintf("secret/data/app/s%05d", i)); code != 200 {
				return false
			}
		}
		return true
	})
	rssKiB := rss(b, r.agent.Process.Pid, "VmRSS:")
	// The peak during the sync, and the resident set once the stream has
	// been quiet for a second (the agent gives memory back after a burst).
	peakKiB := rss(b, r.agent.Process.Pid, "VmHWM:")
	time.Sleep(time.Second)
	settledKiB := rss(b, r.agent.Process.Pid, "VmRSS:")
	// Server down, agent restarted: time to serving from the cache.
	r.server.Process.Signal(syscall.SIGKILL)
	r.server.Wait()
	r.agent.Process.Signal(syscall.SIGTERM)
	r.agent.Wait()
	var took time.Duration
	for b.Loop() {
		start := time.Now()
		r.agent = exec.Command(r.bin, "agent", "-config", r.agentCfg)
		if err := r.agent.Start(); err != nil {
			b.Fatal(err)
		}
		for {
			if code, ok := quickGet(r.agentAddr, r.tok, "secret/data/app/s00000"); ok && code == 200 {
				break
			}
			if time.Since(start) > 30*time.Second {
				b.Fatal("the restarted agent does not serve")
			}
			time.Sleep(2 * time.Millisecond)
		}
		took = time.Since(start)
	}
	b.ReportMetric(float64(took.Microseconds())/1000, "start-to-serving-ms")
	b.ReportMetric(float64(rssKiB)/1024, "RSS-after-sync-MiB")
	b.ReportMetric(float64(peakKiB)/1024, "RSS-peak-sync-MiB")
	b.ReportMetric(float64(settledKiB)/1024, "RSS-settled-MiB")
	b.ReportMetric(float64(rss(b, r.agent.Process.Pid, "VmRSS:"))/1024, "RSS-restarted-MiB")
}

// rss returns a process's resident set size (field "VmRSS:") or its peak
// ("VmHWM:") in KiB.
func rss(b *testing.B, pid int, field string) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kib, _ := strconv.Atoi(f[1])
			return kib
		}
	}
	return 0
}

// quickGet reads path from the agent, reporting only whether it answered.
func quickGet(addr, token, path string) (int, bool) {
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/"+path, nil)
	req.Header.Set("X-Vault-Token", token)
	resp, err := (&http.Client{Timeout: time.Second}).Do(req)
	if err != nil {
		return 0, false
	}
	resp.Body.Close()
	return resp.StatusCode, true
}
