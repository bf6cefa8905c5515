package audit

import (
	"path/filepath"
	"testing"
)

// BenchmarkLogEntry measures the pipeline with 16 concurrent callers: encode,
// HMAC, commit, and the group-committed write to a file and the log.
func BenchmarkLogEntry(b *testing.B) {
	for _, devs := range []string{"file", "tlog", "file+tlog"} {
		b.Run(devs, func(b *testing.B) {
			s, _ := newKeys(b)
			br := NewBroker(Options{Signer: s}) // the default checkpoint interval
			defer br.Close()
			dir := b.TempDir()
			if devs != "tlog" {
				if err := br.Enable(DeviceConfig{Path: "file", Type: TypeFile, Options: map[string]string{"file_path": filepath.Join(dir, "a.log")}}); err != nil {
					b.Fatal(err)
				}
			}
			if devs != "file" {
				if err := br.Enable(DeviceConfig{Path: "log", Type: TypeLog, Options: map[string]string{"path": filepath.Join(dir, "log")}}); err != nil {
					b.Fatal(err)
				}
			}
			salt := NewSalt(make([]byte, 32))
			b.SetParallelism(8)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				e := sampleEntry(1)
				for pb.Next() {
					if _, err := br.LogEntry(e, salt); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
			if st := br.Stats(); st.Batches > 0 {
				b.ReportMetric(float64(st.Entries)/float64(st.Batches), "entries/batch")
			}
		})
	}
}
