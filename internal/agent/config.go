package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/edgevault/edgevault/internal/zone"
)

// Config configures Run. Validate checks it; Run calls Validate first.
type Config struct {
	// ServerAddr is the control plane's address, "https://host:port".
	ServerAddr string
	// ServerCA is a PEM file holding the CA certificate(s) of the server's
	// TLS certificate; "" uses the system roots.
	ServerCA string
	// Zone is the trust zone the agent enrolls in and serves. Required.
	Zone string
	// JoinToken is used once, when StateDir holds no identity yet.
	JoinToken string
	// StateDir holds the identity (identity.pem: P-256 key and certificate
	// chain, 0600), cache.db, cache.key and local-token. It is created with
	// mode 0700 and must not be accessible by group or others.
	StateDir string
	// Listen is the loopback TCP address of the local API, such as
	// "127.0.0.1:8100" (port 0 picks one); "" means none.
	Listen string
	// Socket is the path of the local API's unix socket (created 0600);
	// "" means none. At least one of Listen and Socket is required.
	Socket string
	// Logger receives the agent's events; nil discards them. Secrets and
	// tokens are never logged.
	Logger *slog.Logger
	// Clock returns the current time for staleness and certificate renewal;
	// nil means time.Now.
	Clock func() time.Time
	// TPM is the TPM 2.0 to attest with and seal the cache key to
	// (tpmdev.Open: "/dev/tpmrm0", "tcp://127.0.0.1:2321",
	// "unix:///run/swtpm.sock"); "" means none: a join token, a key file.
	TPM string
	// OfflinePKI lists the PKI roles (offline_pki in the configuration
	// file) the agent may issue certificates from while the control plane
	// is unreachable, with a name-constrained sub-CA the server signs for
	// it; each role must have allow_offline_sub_ca. Empty (the default):
	// the agent never issues. See subca.go and docs/pki.md.
	OfflinePKI []OfflinePKI `json:"offline_pki" hcl:"offline_pki"`
}

// OfflinePKI names one role of one PKI mount of the agent's zone.
type OfflinePKI struct {
	// Mount is the PKI mount's path, such as "pki" (no leading or
	// trailing slash needed).
	Mount string `json:"mount" hcl:"mount"`
	// Role is the role's name, as in <mount>/issue/<role>.
	Role string `json:"role" hcl:"role"`
}

// Info describes a running agent, as Run reports it to its ready callback.
type Info struct {
	// Listen is the TCP address actually listened on (port 0 resolved);
	// "" without a TCP listener.
	Listen string
	// Socket is the unix socket path; "" without one.
	Socket string
	// LocalToken is the token local applications send as X-Vault-Token.
	LocalToken string
	// AgentID and SPIFFEID name the agent; both are "" until it has
	// enrolled (an agent started without a reachable server enrolls later).
	AgentID, SPIFFEID string
}

// Validate checks the configuration; each error names the field to fix.
func (c Config) Validate() error {
	if c.ServerAddr == "" {
		return errors.New("agent: config: ServerAddr is required (the control plane's https:// address)")
	}
	u, err := url.Parse(c.ServerAddr)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("agent: config: ServerAddr %q: want https://host:port", c.ServerAddr)
	}
	if u.Scheme != "https" {
		return fmt.Errorf("agent: config: ServerAddr %q: the agent talks to the server over TLS only; use https://", c.ServerAddr)
	}
	if c.ServerCA != "" {
		if _, err := os.Stat(c.ServerCA); err != nil {
			return fmt.Errorf("agent: config: ServerCA: %w", err)
		}
	}
	if c.Zone == "" {
		return errors.New("agent: config: Zone is required (the trust zone the agent serves)")
	}
	if err := zone.ValidateName(c.Zone); err != nil {
		return fmt.Errorf("agent: config: Zone: %w", err)
	}
	if c.StateDir == "" {
		return errors.New("agent: config: StateDir is required (where the identity and the cache are kept)")
	}
	if c.Listen == "" && c.Socket == "" {
		return errors.New("agent: config: Listen or Socket is required (where local applications reach the agent)")
	}
	if err := validateOfflinePKI(c.OfflinePKI); err != nil {
		return err
	}
	if c.Listen != "" {
		host, _, err := net.SplitHostPort(c.Listen)
		if err != nil {
			return fmt.Errorf("agent: config: Listen %q: %w", c.Listen, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("agent: config: Listen %q: the local API listens on loopback only (127.0.0.1, ::1 or localhost)", c.Listen)
		}
	}
	return nil
}

func (c Config) clock() func() time.Time {
	if c.Clock == nil {
		return time.Now
	}
	return c.Clock
}

func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// Bounds of OfflinePKI entries.
const (
	maxOfflinePKI     = 64
	maxOfflineMount   = 256
	maxOfflineRoleLen = 128
)

// validateOfflinePKI checks the offline PKI roles: a mount path and a role
// name each, no duplicates.
func validateOfflinePKI(l []OfflinePKI) error {
	if len(l) > maxOfflinePKI {
		return fmt.Errorf("agent: config: OfflinePKI: at most %d roles, got %d", maxOfflinePKI, len(l))
	}
	seen := map[string]bool{}
	for i, o := range l {
		m := strings.Trim(o.Mount, "/")
		switch {
		case m == "" || len(m) > maxOfflineMount:
			return fmt.Errorf("agent: config: OfflinePKI[%d].Mount %q: want a mount path such as \"pki\" (1 to %d bytes)", i, o.Mount, maxOfflineMount)
		case strings.ContainsAny(m, " \t\n?#%\x00") || strings.Contains(m, "//") || m == "sys" || m == "auth" ||
			strings.HasPrefix(m, "sys/") || strings.HasPrefix(m, "auth/") || slices.Contains(strings.Split(m, "/"), ".."):
			return fmt.Errorf("agent: config: OfflinePKI[%d].Mount %q: not a secrets engine mount path", i, o.Mount)
		case o.Role == "" || len(o.Role) > maxOfflineRoleLen || strings.ContainsAny(o.Role, "/ \t\n?#%\x00") || o.Role == "..":
			return fmt.Errorf("agent: config: OfflinePKI[%d].Role %q: want a role name (1 to %d bytes, no '/')", i, o.Role, maxOfflineRoleLen)
		case seen[m+"\x00"+o.Role]:
			return fmt.Errorf("agent: config: OfflinePKI[%d]: %s/issue/%s is listed twice", i, m, o.Role)
		}
		seen[m+"\x00"+o.Role] = true
	}
	return nil
}
