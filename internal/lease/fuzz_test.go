package lease

import (
	"testing"
	"time"
)

// FuzzParseDueName checks the due/ index key decoder never panics, and that
// whatever it accepts round-trips through dueName.
func FuzzParseDueName(f *testing.F) {
	f.Add(dueName(time.Unix(1764133200, 123), "database/creds/ro/Kn7Up9iqMq47uproeVJDGjFr"))
	f.Add(dueName(time.Unix(0, 0), "pki/issue/web/x"))
	f.Add("0000000000000000.")
	f.Add("ffffffffffffffff.YQ")
	f.Add("00000000000000zz.YQ")
	f.Fuzz(func(t *testing.T, name string) {
		ns, id, err := parseDueName(name)
		if err != nil {
			return
		}
		if ns < 0 || id == "" {
			t.Fatalf("accepted %q as (%d, %q)", name, ns, id)
		}
		back := dueName(time.Unix(0, ns), id)
		ns2, id2, err := parseDueName(back)
		if err != nil || ns2 != ns || id2 != id || len(back) != 17+len(b64.EncodeToString([]byte(id))) {
			t.Fatalf("round trip %q -> (%d, %q) -> %q -> (%d, %q, %v)", name, ns, id, back, ns2, id2, err)
		}
	})
}

// FuzzDecodeLease checks stored-record decoding never panics and keeps the
// id check.
func FuzzDecodeLease(f *testing.F) {
	f.Add("database/creds/ro/a", []byte(`{"id":"database/creds/ro/a","path":"database/creds/ro","issue_time":"2026-11-26T05:00:00Z","expire_time":"2026-11-26T06:00:00Z","ttl":3600000000000,"max_ttl":86400000000000,"renewable":true,"token_accessor":"acc","data":{"username":"v-ro-1"}}`))
	f.Add("x", []byte(`{"id":"x","revoke_attempts":3,"last_error":"down","next_attempt":"2026-11-26T05:00:00Z"}`))
	f.Add("x", []byte(`{"id":"y"}`))
	f.Add("x", []byte(`null`))
	f.Fuzz(func(t *testing.T, id string, raw []byte) {
		l, err := decodeLease(id, raw)
		if err == nil && l.ID != id {
			t.Fatalf("decoded lease %q for id %q", l.ID, id)
		}
	})
}
