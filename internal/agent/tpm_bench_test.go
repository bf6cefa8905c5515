package agent

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/edgevault/edgevault/internal/tpmdev"
	"github.com/edgevault/edgevault/internal/tpmdev/swtpmtest"
)

// BenchmarkTPMEnroll measures an agent's whole TPM enrollment against a
// server over loopback TLS: the credential challenge, ActivateCredential,
// the quote, the server's checks and the certificate — with the in-process
// TPM simulator and with swtpm (a separate process, TCP). The AK exists
// already (it is created once per machine). Reports p50 and p99.
func BenchmarkTPMEnroll(b *testing.B) {
	for _, tc := range []struct {
		name string
		open func(b *testing.B) *tpmdev.Device
	}{
		{"simulator", func(b *testing.B) *tpmdev.Device {
			sim, err := simulator.Get()
			if err != nil {
				b.Fatal(err)
			}
			return tpmdev.New(transport.FromReadWriteCloser(sim), sim)
		}},
		{"swtpm", func(b *testing.B) *tpmdev.Device {
			d, err := tpmdev.Open(swtpmtest.Start(b, "tcp"))
			if err != nil {
				b.Fatal(err)
			}
			return d
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dev := tc.open(b)
			defer dev.Close()
			cp := startControlPlane(b, "1h")
			ta, err := newTPMAttestor(dev, Config{StateDir: b.TempDir(), ServerAddr: cp.hts.URL, Zone: testZone})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := cp.admin.Logical().Write("sys/zones/"+testZone+"/attestation", map[string]any{
				"ek_hashes": []string{ta.ekHash}, "pcrs": []int{0, 1, 2, 3, 4, 5, 6, 7}}); err != nil {
				b.Fatal(err)
			}
			if _, err := dev.LoadAK(ta.dir); err != nil {
				b.Fatal(err)
			}
			a := &agent{cfg: Config{ServerAddr: cp.hts.URL, ServerCA: cp.caPEM, Zone: testZone}}
			a.roots = cp.hts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
			hc := a.httpClient(false)
			key, err := newKey()
			if err != nil {
				b.Fatal(err)
			}
			pub, err := publicKeyField(key)
			if err != nil {
				b.Fatal(err)
			}
			var took []time.Duration
			for b.Loop() {
				start := time.Now()
				body, err := ta.enroll(context.Background(), hc, key)
				if err != nil {
					b.Fatal(err)
				}
				body["public_key"] = pub
				if _, _, err := postAttest(context.Background(), hc, cp.hts.URL, testZone, "enroll", body); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
