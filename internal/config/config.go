// Package config reads the edgevault server's configuration file, written in
// HCL or JSON with the block names Vault uses (listener, storage, seal), and
// validates it once at start-up with errors that say what to fix.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
)

// Config is the server's configuration.
type Config struct {
	// Listener is where the API is served.
	Listener Listener
	// Storage is the physical backend.
	Storage Storage
	// Seal is how the root key is protected: "shamir" (the default),
	// "pkcs11" (auto-unseal with an HSM key; settings in PKCS11) or "dev"
	// (auto-unseal with a key in a local file, DevKeyFile: development only).
	Seal string
	// DevKeyFile is the key file of seal "dev" (created when missing).
	DevKeyFile string
	// PKCS11 holds the settings of seal "pkcs11"; nil for other seals.
	PKCS11 *PKCS11Seal
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string
	// MaxRequestSize bounds request bodies in bytes (default 32 MiB).
	MaxRequestSize int64
	// Audit is where every request and response is recorded.
	Audit Audit
}

// Audit configures the audit devices. Without audit blocks, a server on
// bolt storage gets two: "file/" (audit.log) and "log/" (the transparency
// log in audit-log/), both beside the database file; audit_disable = true
// turns that default off.
type Audit struct {
	// Devices come from audit "<path>" { type = ..., ... } blocks.
	Devices []AuditDevice
	// Require is "all" (every device must accept each entry; the default)
	// or "any" (one is enough).
	Require string
	// Disable turns off the default devices; it cannot be combined with audit blocks.
	Disable bool
	// KeyName names the checkpoint signing key created at first unseal.
	KeyName string
	// CheckpointInterval is how often the transparency log signs a checkpoint.
	CheckpointInterval time.Duration
	// LogReset accepts, at the next unseal, a transparency log smaller than
	// (or not extending) the last checkpoint the server published.
	LogReset bool
}

// AuditDevice is one audit "<path>" block.
type AuditDevice struct {
	Path        string
	Type        string // "file" or "tlog"
	Description string
	Options     map[string]string // file: file_path; tlog: path, origin
}

// Listener is a TCP listener.
type Listener struct {
	// Address is host:port (default 127.0.0.1:8200).
	Address string
	// TLSCertFile and TLSKeyFile are PEM files; both or neither.
	TLSCertFile string
	TLSKeyFile  string
	// TLSDisable serves plain HTTP; it must be set explicitly when no
	// certificate is given.
	TLSDisable bool
}

// Storage selects the physical backend.
type Storage struct {
	// Type is "bolt" (one file) or "inmem" (nothing survives a restart).
	Type string
	// Path is the bolt database file.
	Path string
}

// PKCS11Seal is the body of seal "pkcs11" { ... }. The PIN is never part of
// it: it comes from the environment (EDGEVAULT_HSM_PIN) or PinFile.
type PKCS11Seal struct {
	// Lib is the absolute path of the PKCS#11 module, e.g.
	// /usr/lib/softhsm/libsofthsm2.so.
	Lib string
	// TokenLabel selects the token by label; exactly one of TokenLabel and
	// Slot is required.
	TokenLabel string
	// Slot selects the token by slot number when HasSlot.
	Slot    int64
	HasSlot bool
	// KeyLabel is the label of the AES-256 key (see operator hsm-keygen).
	KeyLabel string
	// PinFile is a file holding the user PIN, read when EDGEVAULT_HSM_PIN
	// is unset.
	PinFile string
}

// noSlot marks a pkcs11 seal block without a slot setting.
const noSlot = math.MinInt64

// Default returns the defaults every file is applied on top of.
func Default() Config {
	return Config{
		Listener:       Listener{Address: "127.0.0.1:8200"},
		Seal:           "shamir",
		LogLevel:       "info",
		MaxRequestSize: 32 << 20,
	}
}

// Load reads and validates the file at path.
func Load(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(string(raw))
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse parses HCL or JSON configuration text and validates it.
func Parse(text string) (Config, error) {
	root, err := hcl.Parse(text)
	if err != nil {
		return Config{}, fmt.Errorf("parse: %w", err)
	}
	list, ok := root.Node.(*ast.ObjectList)
	if !ok {
		return Config{}, errors.New("parse: the file must be an object of settings")
	}
	cfg := Default()
	seen := map[string]int{}
	for _, item := range list.Items {
		if len(item.Keys) == 0 {
			continue
		}
		key := item.Keys[0].Token.Value().(string)
		seen[key]++
		if seen[key] > 1 && key != "listener" && key != "audit" {
			return Config{}, fmt.Errorf("%q is given more than once", key)
		}
		switch key {
		case "listener":
			if seen[key] > 1 {
				return Config{}, errors.New("only one listener block is supported")
			}
			typ, body, err := block(item, key)
			if err != nil {
				return Config{}, err
			}
			if typ != "tcp" {
				return Config{}, fmt.Errorf("listener %q: only \"tcp\" listeners are supported", typ)
			}
			if err := decodeBody(body, "listener", map[string]any{
				"address": &cfg.Listener.Address, "tls_cert_file": &cfg.Listener.TLSCertFile,
				"tls_key_file": &cfg.Listener.TLSKeyFile, "tls_disable": &cfg.Listener.TLSDisable,
			}); err != nil {
				return Config{}, err
			}
		case "storage", "backend":
			typ, body, err := block(item, key)
			if err != nil {
				return Config{}, err
			}
			cfg.Storage.Type = typ
			if err := decodeBody(body, "storage", map[string]any{"path": &cfg.Storage.Path}); err != nil {
				return Config{}, err
			}
		case "seal":
			typ, body, err := block(item, key)
			if err != nil {
				return Config{}, err
			}
			cfg.Seal = typ
			if typ == "dev" {
				if err := decodeBody(body, "seal \"dev\"", map[string]any{"key_file": &cfg.DevKeyFile}); err != nil {
					return Config{}, err
				}
				break
			}
			if typ != "pkcs11" {
				if err := decodeBody(body, "seal", map[string]any{}); err != nil {
					return Config{}, err
				}
				break
			}
			for _, it := range body.Items {
				if k := it.Keys[0].Token.Value().(string); k == "pin" {
					return Config{}, errors.New("seal \"pkcs11\": pin: a PIN must not be written in the configuration file; set EDGEVAULT_HSM_PIN or pin_file (a file readable only by the server)")
				}
			}
			p := &PKCS11Seal{Slot: noSlot}
			if err := decodeBody(body, "seal \"pkcs11\"", map[string]any{
				"lib": &p.Lib, "token_label": &p.TokenLabel, "slot": &p.Slot,
				"key_label": &p.KeyLabel, "pin_file": &p.PinFile,
			}); err != nil {
				return Config{}, err
			}
			p.HasSlot = p.Slot != noSlot
			cfg.PKCS11 = p
		case "log_level":
			if err := hcl.DecodeObject(&cfg.LogLevel, item.Val); err != nil {
				return Config{}, fmt.Errorf("log_level: %w", err)
			}
		case "max_request_size":
			if err := hcl.DecodeObject(&cfg.MaxRequestSize, item.Val); err != nil {
				return Config{}, fmt.Errorf("max_request_size: %w", err)
			}
		case "audit":
			if len(item.Keys) != 2 {
				return Config{}, errors.New(`audit: expected a device path label, as in audit "file" { type = "file" file_path = "/var/log/edgevault/audit.log" }`)
			}
			path, body, err := block(item, key)
			if err != nil {
				return Config{}, err
			}
			d := AuditDevice{Path: path, Options: map[string]string{}}
			var filePath, dir, origin string
			where := fmt.Sprintf("audit %q", path)
			if err := decodeBody(body, where, map[string]any{"type": &d.Type, "description": &d.Description,
				"file_path": &filePath, "path": &dir, "origin": &origin}); err != nil {
				return Config{}, err
			}
			for k, v := range map[string]string{"file_path": filePath, "path": dir, "origin": origin} {
				if v != "" {
					d.Options[k] = v
				}
			}
			cfg.Audit.Devices = append(cfg.Audit.Devices, d)
		case "audit_require":
			if err := hcl.DecodeObject(&cfg.Audit.Require, item.Val); err != nil {
				return Config{}, fmt.Errorf("audit_require: %w", err)
			}
		case "audit_disable":
			v, err := decodeBool(item.Val)
			if err != nil {
				return Config{}, fmt.Errorf("audit_disable: %w", err)
			}
			cfg.Audit.Disable = v
		case "audit_log_reset":
			v, err := decodeBool(item.Val)
			if err != nil {
				return Config{}, fmt.Errorf("audit_log_reset: %w", err)
			}
			cfg.Audit.LogReset = v
		case "audit_key_name":
			if err := hcl.DecodeObject(&cfg.Audit.KeyName, item.Val); err != nil {
				return Config{}, fmt.Errorf("audit_key_name: %w", err)
			}
		case "audit_checkpoint_interval":
			var v string
			if err := hcl.DecodeObject(&v, item.Val); err != nil {
				return Config{}, fmt.Errorf("audit_checkpoint_interval: %w", err)
			}
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > time.Minute {
				return Config{}, fmt.Errorf("audit_checkpoint_interval %q: expected a duration between 1ms and 1m, e.g. \"100ms\"", v)
			}
			cfg.Audit.CheckpointInterval = d
		case "ui", "disable_mlock", "api_addr", "cluster_addr":
			// Accepted for compatibility with Vault configuration files; unused.
		default:
			return Config{}, fmt.Errorf("unknown setting %q (known: listener, storage, seal, audit, audit_require, audit_disable, audit_key_name, audit_checkpoint_interval, audit_log_reset, log_level, max_request_size)", key)
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// block returns the label and body of `key "label" { ... }`.
func block(item *ast.ObjectItem, key string) (string, *ast.ObjectList, error) {
	if len(item.Keys) != 2 {
		return "", nil, fmt.Errorf("%s: expected one type label, as in %s \"%s\" { ... }", key, key, exampleLabel(key))
	}
	label := item.Keys[1].Token.Value().(string)
	obj, ok := item.Val.(*ast.ObjectType)
	if !ok {
		return "", nil, fmt.Errorf("%s %q: expected a block { ... }", key, label)
	}
	return label, obj.List, nil
}

func exampleLabel(key string) string {
	switch key {
	case "listener":
		return "tcp"
	case "seal":
		return "shamir"
	}
	return "bolt"
}

// decodeBody decodes each known key of body into its target and refuses
// unknown keys.
func decodeBody(body *ast.ObjectList, where string, fields map[string]any) error {
	for _, item := range body.Items {
		key := item.Keys[0].Token.Value().(string)
		target, ok := fields[key]
		if !ok {
			known := make([]string, 0, len(fields))
			for k := range fields {
				known = append(known, k)
			}
			sort.Strings(known)
			return fmt.Errorf("%s: unknown setting %q (known: %s)", where, key, strings.Join(known, ", "))
		}
		if b, ok := target.(*bool); ok {
			v, err := decodeBool(item.Val)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", where, key, err)
			}
			*b = v
			continue
		}
		if _, ok := item.Val.(*ast.LiteralType); !ok {
			return fmt.Errorf("%s: %s: expected a single value, not a block or list", where, key)
		}
		if err := hcl.DecodeObject(target, item.Val); err != nil {
			return fmt.Errorf("%s: %s: expected %s", where, key, kindOf(target))
		}
	}
	return nil
}

// Validate checks the configuration as a whole.
func (c *Config) Validate() error {
	switch c.Storage.Type {
	case "":
		return errors.New("storage: a storage block is required, e.g. storage \"bolt\" { path = \"/var/lib/edgevault/edgevault.db\" }")
	case "bolt":
		if c.Storage.Path == "" {
			return errors.New("storage \"bolt\": path is required")
		}
	case "inmem":
		if c.Storage.Path != "" {
			return errors.New("storage \"inmem\": takes no path")
		}
	default:
		return fmt.Errorf("storage %q: unknown type (supported: bolt, inmem)", c.Storage.Type)
	}
	switch c.Seal {
	case "shamir":
	case "pkcs11":
		if err := c.PKCS11.validate(); err != nil {
			return err
		}
	case "dev":
		if c.DevKeyFile == "" {
			return errors.New("seal \"dev\": key_file is required (it is created with a random key when missing)")
		}
	default:
		return fmt.Errorf("seal %q: unknown type (supported: shamir, pkcs11, dev)", c.Seal)
	}
	if _, _, err := net.SplitHostPort(c.Listener.Address); err != nil {
		return fmt.Errorf("listener: address %q: %w", c.Listener.Address, err)
	}
	l := c.Listener
	switch {
	case (l.TLSCertFile == "") != (l.TLSKeyFile == ""):
		return errors.New("listener: tls_cert_file and tls_key_file must be given together")
	case l.TLSCertFile == "" && !l.TLSDisable:
		return errors.New("listener: no TLS certificate given; set tls_cert_file and tls_key_file, or tls_disable = true to serve plain HTTP")
	case l.TLSCertFile != "" && l.TLSDisable:
		return errors.New("listener: tls_disable = true contradicts tls_cert_file")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level %q: expected debug, info, warn or error", c.LogLevel)
	}
	if c.MaxRequestSize <= 0 {
		return fmt.Errorf("max_request_size %d: must be positive", c.MaxRequestSize)
	}
	return c.Audit.validate(c.Storage)
}

// validate checks the audit settings and fills in the default devices.
func (a *Audit) validate(st Storage) error {
	switch a.Require {
	case "":
		a.Require = "all"
	case "all", "any":
	default:
		return fmt.Errorf("audit_require %q: expected \"all\" or \"any\"", a.Require)
	}
	if a.Disable && len(a.Devices) > 0 {
		return errors.New("audit_disable = true contradicts the audit blocks; remove one or the other")
	}
	if !a.Disable && len(a.Devices) == 0 && st.Type == "bolt" {
		dir := filepath.Dir(st.Path)
		a.Devices = []AuditDevice{
			{Path: "file", Type: "file", Description: "default: beside the database", Options: map[string]string{"file_path": filepath.Join(dir, "audit.log")}},
			{Path: "log", Type: "tlog", Description: "default: beside the database", Options: map[string]string{"path": filepath.Join(dir, "audit-log")}},
		}
	}
	logs := 0
	paths := map[string]bool{}
	for _, d := range a.Devices {
		where := fmt.Sprintf("audit %q", d.Path)
		if p := strings.Trim(d.Path, "/"); p == "" || strings.Contains(p, "/") || paths[p] {
			return errors.New(where + ": want a unique device path without slashes, e.g. audit \"file\" { ... }")
		} else {
			paths[p] = true
		}
		switch d.Type {
		case "file":
			if d.Options["file_path"] == "" {
				return errors.New(where + ": file_path is required for a file device")
			}
			if d.Options["path"] != "" || d.Options["origin"] != "" {
				return errors.New(where + ": path and origin belong to tlog devices; a file device takes file_path")
			}
		case "tlog":
			logs++
			if d.Options["path"] == "" {
				return errors.New(where + ": path (a directory) is required for a tlog device")
			}
			if d.Options["file_path"] != "" {
				return errors.New(where + ": file_path belongs to file devices; a tlog device takes path")
			}
		case "":
			return errors.New(where + `: type is required ("file" or "tlog")`)
		default:
			return fmt.Errorf("%s: type %q: expected \"file\" or \"tlog\"", where, d.Type)
		}
	}
	if logs > 1 {
		return errors.New("audit: only one tlog device is supported")
	}
	return nil
}

// validate checks the pkcs11 seal settings, naming the field at fault.
func (p *PKCS11Seal) validate() error {
	const where = "seal \"pkcs11\""
	switch {
	case p == nil:
		return errors.New(where + ": settings are required (lib, token_label or slot, key_label)")
	case p.Lib == "":
		return errors.New(where + ": lib is required, e.g. lib = \"/usr/lib/softhsm/libsofthsm2.so\"")
	case !filepath.IsAbs(p.Lib):
		return fmt.Errorf("%s: lib %q: must be an absolute path", where, p.Lib)
	case p.TokenLabel == "" && !p.HasSlot:
		return errors.New(where + ": token_label or slot is required")
	case p.TokenLabel != "" && p.HasSlot:
		return errors.New(where + ": token_label and slot: give one, not both")
	case p.HasSlot && p.Slot < 0:
		return fmt.Errorf("%s: slot %d: must not be negative", where, p.Slot)
	case p.KeyLabel == "":
		return errors.New(where + ": key_label is required")
	case p.PinFile != "" && !filepath.IsAbs(p.PinFile):
		return fmt.Errorf("%s: pin_file %q: must be an absolute path", where, p.PinFile)
	}
	return nil
}

// decodeBool reads a boolean written as Vault's configurations write them:
// true, 1, "true" or "1" (and their false forms).
func decodeBool(n ast.Node) (bool, error) {
	lit, ok := n.(*ast.LiteralType)
	if !ok {
		return false, errors.New("expected true or false")
	}
	switch v := lit.Token.Value().(type) {
	case bool:
		return v, nil
	case int64:
		if v == 0 || v == 1 {
			return v == 1, nil
		}
	case string:
		if b, err := strconv.ParseBool(v); err == nil {
			return b, nil
		}
	}
	return false, fmt.Errorf("expected true or false, got %s", lit.Token.Text)
}

// kindOf names what a decode target expects, for error messages.
func kindOf(target any) string {
	switch target.(type) {
	case *string:
		return "a string"
	case *int64, *int:
		return "a number"
	}
	return "a value of another type"
}
