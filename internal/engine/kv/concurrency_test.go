package kv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/edgevault/edgevault/internal/logical"
)

// TestConcurrentCASWriters: many writers race with cas=v for every v on one
// key; exactly one wins each version.
func TestConcurrentCASWriters(t *testing.T) {
	h := newHarness(t)
	const writers, versions = 8, 60
	var mu sync.Mutex
	wins := make(map[int]int)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := 0; v < versions; v++ {
				resp, err := h.kv.HandleRequest(context.Background(), &logical.Request{
					Operation: logical.UpdateOperation,
					Path:      "data/contended",
					Data:      body(t, fmt.Sprintf(`{"data":{"w":"%d"},"options":{"cas":%d}}`, w, v)),
				})
				if errors.Is(err, logical.ErrCASMismatch) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				if resp.Data["version"] != int64(v+1) {
					errs <- fmt.Errorf("cas %d produced version %v", v, resp.Data["version"])
					return
				}
				mu.Lock()
				wins[v]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for v := 0; v < versions; v++ {
		if wins[v] != 1 {
			t.Errorf("cas %d won %d times", v, wins[v])
		}
	}
	md := h.must(logical.ReadOperation, "metadata/contended", "").Data
	if md["current_version"] != int64(versions) {
		t.Errorf("current_version %v", md["current_version"])
	}
}

// TestConcurrentReadersDuringPruning: readers of old versions race writers
// that prune and destroy; a reader sees data, a 404 body or not-found, never
// an internal error.
func TestConcurrentReadersDuringPruning(t *testing.T) {
	h := newHarness(t)
	h.must(logical.UpdateOperation, "config", `{"max_versions":3}`)
	keys := []string{"r/a", "r/b", "r/c"}
	for _, k := range keys {
		h.must(logical.UpdateOperation, "data/"+k, `{"data":{"v":"0"}}`)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for _, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= 150; i++ {
				if _, err := h.kv.HandleRequest(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "data/" + k,
					Data: body(t, fmt.Sprintf(`{"data":{"v":"%d"}}`, i))}); err != nil {
					errs <- err
					return
				}
				if i%7 == 0 {
					_, _ = h.kv.HandleRequest(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "destroy/" + k,
						Data: body(t, fmt.Sprintf(`{"versions":[%d]}`, i-1))})
				}
			}
		}()
	}
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 600; i++ {
				k := keys[i%len(keys)]
				resp, err := h.kv.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "data/" + k,
					Data: map[string]any{"version": fmt.Sprint(i%150 + 1)}})
				switch {
				case errors.Is(err, logical.ErrNotFound):
				case err != nil:
					errs <- err
					return
				case resp.StatusCode == http.StatusNotFound:
				case resp.Data["data"] == nil:
					errs <- fmt.Errorf("200 without data: %v", resp.Data)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
