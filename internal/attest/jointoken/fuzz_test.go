package jointoken

import (
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	good, _ := newToken("east")
	root, _ := newToken("")
	for _, s := range []string{good, root, "", "evjt", "evjt..", "evjt.root.", "evjt.east." + strings.Repeat("A", 43),
		"evjt.East." + strings.Repeat("A", 43), "evjt.east." + strings.Repeat("_", 42) + "=", good + "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		z, err := Parse(s)
		if err != nil {
			return
		}
		// An accepted token names a valid zone and has exactly the shape
		// newToken makes, so it round-trips through its parts.
		if validateZone(z) != nil {
			t.Fatalf("accepted zone %q", z)
		}
		parts := strings.Split(s, ".")
		if len(parts) != 3 || parts[0] != Scheme || parts[1] != ZoneLabel(z) || len(parts[2]) != secretTextLen {
			t.Fatalf("accepted %q", s)
		}
	})
}

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"id":"` + ID("x") + `","zone":"east","created_at":"2026-11-26T12:00:00Z","expires_at":"2026-11-26T12:15:00Z"}`))
	f.Add([]byte(`{"id":"` + ID("x") + `","zone":"","created_at":"2026-11-26T12:00:00Z","expires_at":"2026-11-26T12:15:00Z","used_at":"2026-11-26T12:01:00Z","labels":{"a":"b"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := parseRecord(b)
		if err != nil {
			return
		}
		if !validID(info.ID) || validateZone(info.Zone) != nil || info.CreatedAt.IsZero() || info.ExpiresAt.IsZero() {
			t.Fatalf("accepted bad record %+v", info)
		}
	})
}
