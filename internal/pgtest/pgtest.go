// Package pgtest gives tests a real, throwaway PostgreSQL server.
//
// Start returns the URL of a superuser connection. When the environment
// variable EDGEVAULT_TEST_PG_URL is set, that server is used as is (tests
// must then not change its superuser and must use unique names). Otherwise a
// private server is created: initdb into a fresh temporary directory with
// scram-sha-256 password authentication (so VALID UNTIL and password checks
// are real), a random superuser password, TCP on a free 127.0.0.1 port and
// its unix socket inside the data directory; it is stopped (pg_ctl stop -m
// immediate) and the directory removed when the test ends. New always
// creates a private server and hands back a *Server that a test may stop and
// restart (to simulate PostgreSQL being down).
//
// Running as root: initdb and postgres refuse to run as root, so when the
// process's effective uid is 0 the server runs as the unprivileged "postgres"
// account (created by Debian's postgresql package): the data directory is
// created under os.TempDir and chowned to it, and initdb, pg_ctl and postgres
// are started with that uid/gid (exec.Cmd credentials, no su or sudo). If no
// such account exists the test fails with a message saying so.
//
// Binaries: initdb and pg_ctl are looked up on PATH, then in
// /usr/lib/postgresql/<version>/bin (Debian does not put them on PATH). When
// they are absent the test is skipped with a message, unless
// EDGEVAULT_REQUIRE_PG=1 (set by scripts/test), in which case it fails.
package pgtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// EnvURL names the environment variable holding a shared server's URL.
const EnvURL = "EDGEVAULT_TEST_PG_URL"

// EnvRequire names the environment variable that turns "PostgreSQL is not
// installed" from a skip into a failure.
const EnvRequire = "EDGEVAULT_REQUIRE_PG"

// ErrNoBinaries is returned by FindBinDir when initdb/pg_ctl cannot be found.
var ErrNoBinaries = errors.New("pgtest: PostgreSQL server binaries (initdb, pg_ctl) not found")

// Server is a private PostgreSQL server owned by one test.
type Server struct {
	// URL is a superuser connection URL (postgres://user:pass@127.0.0.1:port/postgres).
	URL string
	// Port is the TCP port on 127.0.0.1.
	Port int

	tb      testing.TB
	binDir  string
	dataDir string
	cred    *syscall.Credential
}

// Start returns a superuser URL: EDGEVAULT_TEST_PG_URL when set, otherwise
// that of a private server started for tb and stopped at its cleanup.
func Start(tb testing.TB) string {
	tb.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return New(tb).URL
}

// New starts a private server for tb, stopped and removed at cleanup.
func New(tb testing.TB) *Server {
	tb.Helper()
	bin, err := FindBinDir()
	if err != nil {
		if os.Getenv(EnvRequire) == "1" {
			tb.Fatalf("%v (install Debian's postgresql package; scripts/test does)", err)
		}
		tb.Skipf("skipping: %v; install Debian's postgresql package (scripts/test does)", err)
	}
	s := &Server{tb: tb, binDir: bin}
	if os.Geteuid() == 0 {
		cred, err := postgresCredential()
		if err != nil {
			tb.Fatalf("pgtest: running as root: %v", err)
		}
		s.cred = cred
	}
	dir, err := os.MkdirTemp("", "edgevault-pg-")
	if err != nil {
		tb.Fatalf("pgtest: data directory: %v", err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	if s.cred != nil {
		if err := os.Chown(dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			tb.Fatalf("pgtest: chown %s: %v", dir, err)
		}
	}
	s.dataDir = filepath.Join(dir, "data")
	password := rand.Text()
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	if s.cred != nil {
		if err := os.Chown(pwfile, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			tb.Fatalf("pgtest: chown %s: %v", pwfile, err)
		}
	}
	const superuser = "edgevault"
	if out, err := s.run("initdb", "-D", s.dataDir, "-U", superuser, "--pwfile", pwfile,
		"--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		tb.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	_ = os.Remove(pwfile)
	// Pick a free port; retry if another process takes it between the probe
	// and postgres' bind.
	for attempt := 0; ; attempt++ {
		s.Port = freePort(tb)
		if err := s.Restart(); err == nil {
			break
		} else if attempt >= 4 {
			tb.Fatalf("pgtest: start: %v", err)
		}
	}
	tb.Cleanup(func() { _ = s.Stop() })
	s.URL = (&url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(superuser, password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)),
		Path:     "/postgres",
		RawQuery: "sslmode=disable",
	}).String()
	return s
}

// Stop stops the server immediately (pg_ctl stop -m immediate). Stopping a
// stopped server is not an error.
func (s *Server) Stop() error {
	if _, err := os.Stat(filepath.Join(s.dataDir, "postmaster.pid")); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if out, err := s.run("pg_ctl", "stop", "-D", s.dataDir, "-m", "immediate", "-w", "-t", "30"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// Restart starts the (stopped) server again on the same port and waits
// until it accepts connections.
func (s *Server) Restart() error {
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s -c fsync=off -c max_connections=200",
		s.Port, s.dataDir)
	logFile := filepath.Join(filepath.Dir(s.dataDir), "postgres.log")
	if out, err := s.run("pg_ctl", "start", "-D", s.dataDir, "-o", opts, "-l", logFile, "-w", "-t", "60"); err != nil {
		logTail, _ := os.ReadFile(logFile)
		return fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, logTail)
	}
	return nil
}

func (s *Server) run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	cmd.Dir = filepath.Dir(s.dataDir)
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd.CombinedOutput()
}

// FindBinDir returns the directory holding initdb and pg_ctl: from PATH
// first, then the newest /usr/lib/postgresql/<version>/bin.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return versionOf(matches[i]) > versionOf(matches[j]) })
	for _, m := range matches {
		dir := filepath.Dir(m)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	return "", ErrNoBinaries
}

func versionOf(initdbPath string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdbPath))))
	return v
}

// postgresCredential returns the uid/gid of the "postgres" account.
func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("initdb refuses root and there is no unprivileged \"postgres\" account to run it as (install Debian's postgresql package): %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("account \"postgres\": non-numeric uid %q / gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("pgtest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// SplitURL returns u with its user and password replaced by the
// {{username}} and {{password}} placeholders of a Vault connection_url,
// plus the user and password it held.
func SplitURL(u string) (template, username, password string, err error) {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return "", "", "", fmt.Errorf("pgtest: not a URL with credentials")
	}
	username = p.User.Username()
	password, _ = p.User.Password()
	p.User = nil
	rest := strings.TrimPrefix(p.String(), p.Scheme+"://")
	return p.Scheme + "://{{username}}:{{password}}@" + rest, username, password, nil
}
