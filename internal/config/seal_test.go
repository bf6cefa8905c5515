package config

import (
	"strings"
	"testing"
)

const baseConf = "listener \"tcp\" {\n address = \"127.0.0.1:8200\"\n tls_disable = true\n}\nstorage \"inmem\" {}\n"

func TestPKCS11Seal(t *testing.T) {
	cfg, err := Parse(baseConf + `seal "pkcs11" {
  lib = "/usr/lib/softhsm/libsofthsm2.so"
  token_label = "T"
  key_label = "root"
  pin_file = "/etc/ev/pin"
}`)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.PKCS11
	if cfg.Seal != "pkcs11" || p == nil || p.Lib != "/usr/lib/softhsm/libsofthsm2.so" || p.TokenLabel != "T" ||
		p.KeyLabel != "root" || p.PinFile != "/etc/ev/pin" || p.HasSlot {
		t.Fatalf("parsed %+v %+v", cfg, p)
	}
	cfg, err = Parse(baseConf + `seal "pkcs11" { 
  lib = "/l.so"
  slot = 0
  key_label = "k"
}`)
	if err != nil || !cfg.PKCS11.HasSlot || cfg.PKCS11.Slot != 0 {
		t.Fatalf("slot: %+v %v", cfg.PKCS11, err)
	}
	tests := []struct{ body, want string }{
		{`lib = "/l.so"` + "\n" + `token_label = "T"` + "\n" + `key_label = "k"` + "\n" + `pin = "1234"`, "pin: a PIN must not be written"},
		{`token_label = "T"` + "\n" + `key_label = "k"`, "lib is required"},
		{`lib = "l.so"` + "\n" + `token_label = "T"` + "\n" + `key_label = "k"`, "must be an absolute path"},
		{`lib = "/l.so"` + "\n" + `key_label = "k"`, "token_label or slot is required"},
		{`lib = "/l.so"` + "\n" + `token_label = "T"` + "\n" + `slot = 1` + "\n" + `key_label = "k"`, "not both"},
		{`lib = "/l.so"` + "\n" + `slot = -3` + "\n" + `key_label = "k"`, "slot -3"},
		{`lib = "/l.so"` + "\n" + `token_label = "T"`, "key_label is required"},
		{`lib = "/l.so"` + "\n" + `token_label = "T"` + "\n" + `key_label = "k"` + "\n" + `pin_file = "pin"`, "pin_file \"pin\""},
		{`lib = "/l.so"` + "\n" + `token_label = "T"` + "\n" + `key_label = "k"` + "\n" + `colour = "red"`, "unknown setting \"colour\""},
	}
	for _, tt := range tests {
		_, err := Parse(baseConf + "seal \"pkcs11\" {\n" + tt.body + "\n}\n")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want an error containing %q", tt.body, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "1234") {
			t.Errorf("error shows the PIN: %v", err)
		}
	}
	if _, err := Parse(baseConf + `seal "awskms" {}`); err == nil || !strings.Contains(err.Error(), "supported: shamir, pkcs11") {
		t.Errorf("unknown seal: %v", err)
	}
}
