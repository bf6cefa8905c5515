package pki

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/edgevault/edgevault/internal/logical"
)

// TestConcurrentRevokeCRL issues and revokes from many goroutines while
// CRLs are rebuilt, then checks the final CRL lists every revoked serial.
func TestConcurrentRevokeCRL(t *testing.T) {
	h := newHarness(t)
	root := h.must(opW, "root/generate/internal", `{"common_name":"Root","key_type":"ec"}`)
	ca := parseCert(t, str(t, root, "certificate"))
	h.must(opW, "roles/r", `{"allowed_domains":"example.com","allow_subdomains":true,"key_type":"ec"}`)
	const workers, each = 8, 10
	var mu sync.Mutex
	revoked := map[string]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, workers+1)
	stop := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				resp, err := h.do(opW, "issue/r", fmt.Sprintf(`{"common_name":"w%d-%d.example.com"}`, w, i))
				if err != nil {
					errs <- err
					return
				}
				s := resp.Data["serial_number"].(string)
				if err := h.pki.Revoke(context.Background(), s); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				revoked[s] = true
				mu.Unlock()
			}
		}()
	}
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := h.pki.HandleRequest(context.Background(), &logical.Request{Operation: opR, Path: "crl"}); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	crl := readCRL(t, h, ca)
	if len(crl.RevokedCertificateEntries) != workers*each {
		t.Fatalf("CRL lists %d entries, want %d", len(crl.RevokedCertificateEntries), workers*each)
	}
	for _, e := range crl.RevokedCertificateEntries {
		if !revoked[formatSerial(e.SerialNumber)] {
			t.Fatalf("CRL lists unknown serial %s", formatSerial(e.SerialNumber))
		}
	}
}
