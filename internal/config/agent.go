package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
)

// Agent is the edge agent's configuration file.
type Agent struct {
	// ServerAddress is the control plane, https://host:port.
	ServerAddress string
	// ServerCACert is a PEM file of the CA of the server's TLS certificate
	// (empty: the system's roots).
	ServerCACert string
	// Zone is the agent's trust zone.
	Zone string
	// JoinTokenFile holds the join token that enrolls the agent the first
	// time (EDGEVAULT_JOIN_TOKEN also works); the token itself is never
	// written in the configuration file.
	JoinTokenFile string
	// StateDir holds the agent's identity, cache and local token.
	StateDir string
	// Listen is the loopback TCP address of the local API ("" for none).
	Listen string
	// Socket is the Unix socket of the local API ("" for none).
	Socket string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// TPMDevice is the TPM 2.0 the agent attests with and seals its cache
	// key to: "/dev/tpmrm0", "tcp://127.0.0.1:2321" or "unix:///run/swtpm.sock"
	// (a software TPM). Empty: no TPM (join token, key file).
	TPMDevice string
	// OfflinePKI lists the PKI roles the agent may issue from while the
	// control plane is unreachable (offline_pki blocks; default none).
	OfflinePKI []OfflinePKIRole
}

// OfflinePKIRole is one offline_pki { mount = "pki" role = "web" } block.
type OfflinePKIRole struct {
	Mount, Role string
}

// LoadAgent reads and validates an agent configuration file.
func LoadAgent(path string) (Agent, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Agent{}, fmt.Errorf("read agent config: %w", err)
	}
	a, err := ParseAgent(string(raw))
	if err != nil {
		return Agent{}, fmt.Errorf("agent config %s: %w", path, err)
	}
	return a, nil
}

// ParseAgent parses agent configuration text (HCL or JSON) and validates it:
//
//	server { address = "https://vault.example:8200"  ca_cert = "/etc/edgevault/server-ca.pem" }
//	zone            = "edge-1"
//	join_token_file = "/etc/edgevault/join-token"   # or EDGEVAULT_JOIN_TOKEN
//	state_dir       = "/var/lib/edgevault-agent"
//	listener "tcp"  { address = "127.0.0.1:8100" }
//	listener "unix" { path = "/run/edgevault-agent.sock" }
//	tpm { device = "/dev/tpmrm0" }                  # hardware attestation, cache key sealed to the TPM
//	offline_pki { mount = "pki" role = "web" }      # issue from this role offline (a sub-CA; repeatable)
func ParseAgent(text string) (Agent, error) {
	root, err := hcl.Parse(text)
	if err != nil {
		return Agent{}, fmt.Errorf("parse: %w", err)
	}
	list, ok := root.Node.(*ast.ObjectList)
	if !ok {
		return Agent{}, errors.New("parse: the file must be an object of settings")
	}
	a := Agent{LogLevel: "info"}
	seen := map[string]bool{}
	for _, item := range list.Items {
		key := item.Keys[0].Token.Value().(string)
		if seen[key] && key != "listener" && key != "offline_pki" {
			return Agent{}, fmt.Errorf("%q is given more than once", key)
		}
		seen[key] = true
		switch key {
		case "server":
			obj, ok := item.Val.(*ast.ObjectType)
			if !ok || len(item.Keys) != 1 {
				return Agent{}, errors.New(`server: expected a block, as in server { address = "https://127.0.0.1:8200" }`)
			}
			if err := decodeBody(obj.List, "server", map[string]any{"address": &a.ServerAddress, "ca_cert": &a.ServerCACert}); err != nil {
				return Agent{}, err
			}
		case "tpm":
			obj, ok := item.Val.(*ast.ObjectType)
			if !ok || len(item.Keys) != 1 {
				return Agent{}, errors.New(`tpm: expected a block, as in tpm { device = "/dev/tpmrm0" }`)
			}
			if err := decodeBody(obj.List, "tpm", map[string]any{"device": &a.TPMDevice}); err != nil {
				return Agent{}, err
			}
			if a.TPMDevice == "" {
				return Agent{}, errors.New(`tpm: device is required, e.g. "/dev/tpmrm0", "tcp://127.0.0.1:2321" or "unix:///run/swtpm.sock"`)
			}
		case "offline_pki":
			obj, ok := item.Val.(*ast.ObjectType)
			if !ok || len(item.Keys) != 1 {
				return Agent{}, errors.New(`offline_pki: expected a block, as in offline_pki { mount = "pki" role = "web" }`)
			}
			var r OfflinePKIRole
			if err := decodeBody(obj.List, "offline_pki", map[string]any{"mount": &r.Mount, "role": &r.Role}); err != nil {
				return Agent{}, err
			}
			if r.Mount == "" || r.Role == "" {
				return Agent{}, errors.New(`offline_pki: mount and role are both required, as in offline_pki { mount = "pki" role = "web" }`)
			}
			a.OfflinePKI = append(a.OfflinePKI, r)
		case "listener":
			typ, body, err := block(item, key)
			if err != nil {
				return Agent{}, err
			}
			switch typ {
			case "tcp":
				err = decodeBody(body, `listener "tcp"`, map[string]any{"address": &a.Listen})
			case "unix":
				err = decodeBody(body, `listener "unix"`, map[string]any{"path": &a.Socket})
			default:
				err = fmt.Errorf("listener %q: expected \"tcp\" or \"unix\"", typ)
			}
			if err != nil {
				return Agent{}, err
			}
		case "zone", "join_token_file", "state_dir", "log_level":
			target := map[string]*string{"zone": &a.Zone, "join_token_file": &a.JoinTokenFile, "state_dir": &a.StateDir, "log_level": &a.LogLevel}[key]
			if err := hcl.DecodeObject(target, item.Val); err != nil {
				return Agent{}, fmt.Errorf("%s: expected a string", key)
			}
		case "join_token":
			return Agent{}, errors.New("join_token: a join token must not be written in the configuration file; use join_token_file or EDGEVAULT_JOIN_TOKEN")
		default:
			return Agent{}, fmt.Errorf("unknown setting %q (known: server, zone, join_token_file, state_dir, listener, tpm, offline_pki, log_level)", key)
		}
	}
	return a, a.Validate()
}

// Validate checks the agent configuration, naming the field at fault.
func (a Agent) Validate() error {
	switch {
	case a.ServerAddress == "":
		return errors.New(`server: address is required, e.g. server { address = "https://127.0.0.1:8200" }`)
	case !strings.HasPrefix(a.ServerAddress, "https://"):
		return fmt.Errorf("server: address %q: agents talk to the server over TLS only (https://)", a.ServerAddress)
	case a.Zone == "":
		return errors.New("zone is required: the trust zone the agent belongs to")
	case a.StateDir == "":
		return errors.New("state_dir is required: where the agent keeps its identity and cache")
	case a.Listen == "" && a.Socket == "":
		return errors.New(`a listener is required: listener "tcp" { address = "127.0.0.1:8100" } and/or listener "unix" { path = "..." }`)
	}
	if a.Listen != "" {
		host, _, err := net.SplitHostPort(a.Listen)
		if err != nil {
			return fmt.Errorf(`listener "tcp": address %q: %v`, a.Listen, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf(`listener "tcp": address %q: the agent's local API listens on loopback only`, a.Listen)
		}
	}
	if a.Socket != "" && !filepath.IsAbs(a.Socket) {
		return fmt.Errorf(`listener "unix": path %q: must be absolute`, a.Socket)
	}
	switch a.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level %q: expected debug, info, warn or error", a.LogLevel)
	}
	return nil
}
