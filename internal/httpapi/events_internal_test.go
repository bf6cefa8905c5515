package httpapi

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseRevocationID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		zone string
		seq  uint64
		ok   bool
	}{
		{"edge-eu.12", "edge-eu", 12, true},
		{"root.1", "root", 1, true},
		{"edge.eu.3", "", 0, false}, // a zone name has no dot
		{"edge-eu.0", "", 0, false},
		{"edge-eu.", "", 0, false},
		{".5", "", 0, false},
		{"Edge.5", "", 0, false},
		{"../x.5", "", 0, false},
		{"edge-eu.-1", "", 0, false},
		{"edge-eu.18446744073709551616", "", 0, false},
	} {
		z, seq, ok := parseRevocationID(tc.id)
		if ok != tc.ok || z != tc.zone || seq != tc.seq {
			t.Errorf("parseRevocationID(%q) = %q, %d, %v; want %q, %d, %v", tc.id, z, seq, ok, tc.zone, tc.seq, tc.ok)
		}
	}
}

// FuzzParseRevocationID: an accepted ID names exactly one log key, inside
// the zone's prefix, and prints back to itself.
func FuzzParseRevocationID(f *testing.F) {
	for _, s := range []string{"edge-eu.12", "root.1", "a.b.c", "x/../y.1", "z.01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		z, seq, ok := parseRevocationID(id)
		if !ok {
			return
		}
		key := revocationKey(z, seq)
		if strings.Contains(z, "/") || strings.Contains(z, ".") || !strings.HasPrefix(key, revocationPrefix+z+"/") {
			t.Fatalf("%q: key %q", id, key)
		}
		if again := z + "." + strconv.FormatUint(seq, 10); again != id && strings.TrimLeft(id[len(z)+1:], "0") != strconv.FormatUint(seq, 10) {
			t.Fatalf("%q parses to %q", id, again)
		}
	})
}

// The tracker completes a revocation once every target acked a sequence
// number at or above its feed_seq, and only then.
func TestRevocationTracker(t *testing.T) {
	var done []*pendingRevocation
	tr := newRevocationTracker(func(p *pendingRevocation) { done = append(done, p) })
	rv := revocation{ID: "z.1", Zone: "z", FeedSeq: 10, Targets: []string{"a", "b", "c"}}
	p := tr.add("z", rv, map[string]time.Time{"c": time.Unix(1, 0)})
	now := time.Unix(100, 0)
	tr.acked("a", "z", 9, now)      // before the revocation
	tr.acked("b", "other", 50, now) // another zone
	tr.acked("x", "z", 50, now)     // not a target
	if len(done) != 0 || tr.pending() != 1 {
		t.Fatalf("completed early: %d done, %d pending", len(done), tr.pending())
	}
	tr.acked("a", "z", 10, now)
	if st, ok := tr.status("z.1"); !ok || len(st) != 2 {
		t.Fatalf("status %v %v", st, ok)
	}
	tr.acked("b", "z", 11, now.Add(time.Second))
	select {
	case <-p.done:
	default:
		t.Fatal("done not closed")
	}
	if len(done) != 1 || len(done[0].applied) != 3 || tr.pending() != 0 {
		t.Fatalf("done %v, pending %d", done, tr.pending())
	}
	if _, ok := tr.status("z.1"); ok {
		t.Fatal("still followed after completion")
	}
	// Every target already acked: completed at once.
	tr.add("z", revocation{ID: "z.2", FeedSeq: 1, Targets: []string{"a"}}, map[string]time.Time{"a": now})
	if len(done) != 2 {
		t.Fatal("a revocation every target had acked was not completed")
	}
}
