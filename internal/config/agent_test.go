package config

import (
	"strings"
	"testing"
)

func TestParseAgent(t *testing.T) {
	a, err := ParseAgent(`
server {
  address = "https://127.0.0.1:8200"
  ca_cert = "/etc/ev/ca.pem"
}
zone = "edge-1"
join_token_file = "/etc/ev/jt"
state_dir = "/var/lib/ev-agent"
listener "tcp" { address = "127.0.0.1:8100" }
listener "unix" { path = "/run/ev.sock" }
tpm { device = "/dev/tpmrm0" }
offline_pki { mount = "pki" role = "web" }
offline_pki { mount = "pki-edge" role = "mqtt" }
`)
	if err != nil {
		t.Fatal(err)
	}
	if a.ServerAddress != "https://127.0.0.1:8200" || a.ServerCACert != "/etc/ev/ca.pem" || a.Zone != "edge-1" ||
		a.Listen != "127.0.0.1:8100" || a.Socket != "/run/ev.sock" || a.StateDir != "/var/lib/ev-agent" || a.JoinTokenFile != "/etc/ev/jt" || a.TPMDevice != "/dev/tpmrm0" {
		t.Fatalf("agent = %+v", a)
	}
	if len(a.OfflinePKI) != 2 || a.OfflinePKI[1] != (OfflinePKIRole{Mount: "pki-edge", Role: "mqtt"}) {
		t.Fatalf("offline_pki = %+v", a.OfflinePKI)
	}
	base := `server { address = "https://127.0.0.1:8200" }` + "\nzone = \"z\"\nstate_dir = \"/s\"\n"
	for text, want := range map[string]string{
		`zone = "z"`:                        "server: address is required",
		`server { address = "http://x:1" }`: "over TLS only",
		base:                                "a listener is required",
		base + `listener "tcp" { address = "0.0.0.0:8100" }`:                                              "loopback only",
		base + `listener "unix" { path = "rel.sock" }`:                                                    "must be absolute",
		base + `listener "udp" {}`:                                                                        `listener "udp"`,
		base + `join_token = "evjt.x"` + "\n" + `listener "unix" { path = "/a" }`:                         "must not be written",
		base + `listener "unix" { path = "/a" }` + "\ntpm {}":                                             "tpm: device is required",
		base + `listener "unix" { path = "/a" }` + "\ntpm { device = \"/d\" port = 1 }":                   `"port"`,
		base + `listener "unix" { path = "/a" }` + "\noffline_pki { mount = \"pki\" }":                    "mount and role are both required",
		base + `color = "blue"`:                                                                           `unknown setting "color"`,
		`server { address = "https://a:1" }` + "\nstate_dir=\"/s\"\n" + `listener "unix" { path = "/a" }`: "zone is required",
	} {
		if _, err := ParseAgent(text); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", text, err, want)
		}
	}
}
