package tpmdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

const (
	// dialTimeout bounds connecting to a TPM socket.
	dialTimeout = 5 * time.Second
	// commandTimeout bounds one command over a socket; RSA key generation
	// on a slow hardware TPM can take many seconds.
	commandTimeout = 2 * time.Minute
	// maxResponse bounds a response's declared size (TPMs answer < 4 KiB).
	maxResponse = 1 << 16
)

// Device is one TPM. All methods are safe for concurrent use; they run one
// at a time because a TPM does.
type Device struct {
	mu     sync.Mutex
	tpm    transport.TPM
	closer io.Closer

	ek  object // RSA EK (endorsement hierarchy)
	srk object // ECC SRK (owner hierarchy)
	ak  object // AK, a child of srk

	ekPub    []byte // TPMT_PUBLIC of the EK, cached
	ekCert   []byte // DER, nil when the TPM has none
	certRead bool   // ekCert has been looked up

	akPub  tpm2.TPM2BPublic  // valid when akSet
	akPriv tpm2.TPM2BPrivate // valid when akSet
	akSet  bool
}

// object is a key kept between calls as a saved context.
type object struct {
	saved *tpm2.TPMSContext // nil: not saved, recreate
	name  tpm2.TPM2BName
}

// Open opens the TPM named by spec:
//
//   - "tcp://host:port": a TPM command port speaking raw TPM commands, such
//     as swtpm's "--server type=tcp";
//   - "unix:///path/to/socket": swtpm's "--server type=unixio";
//   - any other value is a character device path such as /dev/tpmrm0 (use
//     the kernel resource manager, not /dev/tpm0, when other programs use
//     the TPM too).
//
// Open checks that the TPM answers a command; errors wrap ErrNoTPM.
func Open(spec string) (*Device, error) {
	var tc transport.TPMCloser
	switch {
	case strings.HasPrefix(spec, "tcp://"):
		addr := strings.TrimPrefix(spec, "tcp://")
		c, err := net.DialTimeout("tcp", addr, dialTimeout)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrNoTPM, spec, err)
		}
		tc = &streamTPM{conn: c}
	case strings.HasPrefix(spec, "unix://"):
		path := strings.TrimPrefix(spec, "unix://")
		c, err := net.DialTimeout("unix", path, dialTimeout)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrNoTPM, spec, err)
		}
		tc = &streamTPM{conn: c}
	case strings.Contains(spec, "://"):
		return nil, fmt.Errorf("%w: %q: unknown scheme (want tcp://, unix:// or a device path)", ErrNoTPM, spec)
	case spec == "":
		return nil, fmt.Errorf("%w: empty TPM spec", ErrNoTPM)
	default:
		fi, err := os.Stat(spec)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoTPM, err)
		}
		if fi.Mode()&os.ModeCharDevice == 0 {
			return nil, fmt.Errorf("%w: %s is not a character device", ErrNoTPM, spec)
		}
		f, err := os.OpenFile(spec, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoTPM, err)
		}
		tc = transport.FromReadWriteCloser(f)
	}
	if _, err := (tpm2.GetRandom{BytesRequested: 8}).Execute(tc); err != nil {
		_ = tc.Close()
		return nil, fmt.Errorf("%w: %s does not answer TPM2_GetRandom: %v", ErrNoTPM, spec, err)
	}
	return New(tc, tc), nil
}

// New returns a Device that sends commands over t and closes closer (which
// may be nil) in Close. Tests use it with the in-process simulator.
func New(t transport.TPM, closer io.Closer) *Device {
	return &Device{tpm: t, closer: closer}
}

// Close releases the connection. Keys stay in the TPM's hierarchies; files
// made by LoadAK and blobs made by Seal stay usable with a new Device.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closer == nil {
		return nil
	}
	c := d.closer
	d.closer = nil
	return c.Close()
}

// streamTPM sends commands over a byte stream (TCP or a Unix socket) and
// reads each response whole: the 10-byte header's size field says how much
// follows, so a short read cannot truncate a response.
type streamTPM struct {
	conn net.Conn
}

// Send implements transport.TPM.
func (s *streamTPM) Send(cmd []byte) ([]byte, error) {
	if err := s.conn.SetDeadline(time.Now().Add(commandTimeout)); err != nil {
		return nil, err
	}
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("tpmdev: send command: %w", err)
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(s.conn, hdr); err != nil {
		return nil, fmt.Errorf("tpmdev: read response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponse {
		return nil, fmt.Errorf("tpmdev: response declares %d bytes", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.conn, rsp[10:]); err != nil {
		return nil, fmt.Errorf("tpmdev: read response body: %w", err)
	}
	return rsp, nil
}

// Close implements io.Closer.
func (s *streamTPM) Close() error { return s.conn.Close() }

// flush evicts a transient handle. Errors are ignored: the only effect of a
// failed flush is a slot in use until the TPM or resource manager resets.
func (d *Device) flush(h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(d.tpm)
}

// load makes obj resident and returns its handle and a function that
// flushes it. It loads obj's saved context when there is one and it still
// loads (it does not after a TPM reset); otherwise it calls create and
// saves the new object's context for next time.
func (d *Device) load(obj *object, create func() (tpm2.TPMHandle, tpm2.TPM2BName, error)) (tpm2.AuthHandle, func(), error) {
	if obj.saved != nil {
		r, err := tpm2.ContextLoad{Context: *obj.saved}.Execute(d.tpm)
		if err == nil {
			h := r.LoadedHandle
			return tpm2.AuthHandle{Handle: h, Name: obj.name, Auth: tpm2.PasswordAuth(nil)}, func() { d.flush(h) }, nil
		}
		obj.saved = nil
	}
	h, name, err := create()
	if err != nil {
		return tpm2.AuthHandle{}, nil, err
	}
	obj.name = name
	if r, err := (tpm2.ContextSave{SaveHandle: h}).Execute(d.tpm); err == nil {
		obj.saved = &r.Context
	}
	return tpm2.AuthHandle{Handle: h, Name: name, Auth: tpm2.PasswordAuth(nil)}, func() { d.flush(h) }, nil
}

// loadPrimary loads (or recreates) a primary key.
func (d *Device) loadPrimary(obj *object, hierarchy tpm2.TPMHandle, tmpl tpm2.TPMTPublic, what string) (tpm2.AuthHandle, *tpm2.CreatePrimaryResponse, func(), error) {
	var created *tpm2.CreatePrimaryResponse
	ah, flush, err := d.load(obj, func() (tpm2.TPMHandle, tpm2.TPM2BName, error) {
		r, err := tpm2.CreatePrimary{PrimaryHandle: hierarchy, InPublic: tpm2.New2B(tmpl)}.Execute(d.tpm)
		if err != nil {
			return 0, tpm2.TPM2BName{}, fmt.Errorf("tpmdev: create %s: %w", what, err)
		}
		created = r
		return r.ObjectHandle, r.Name, nil
	})
	return ah, created, flush, err
}

func (d *Device) loadSRK() (tpm2.AuthHandle, func(), error) {
	ah, _, flush, err := d.loadPrimary(&d.srk, tpm2.TPMRHOwner, tpm2.ECCSRKTemplate, "SRK")
	return ah, flush, err
}

// loadEK loads the EK and caches its public area.
func (d *Device) loadEK() (tpm2.AuthHandle, func(), error) {
	ah, created, flush, err := d.loadPrimary(&d.ek, tpm2.TPMRHEndorsement, tpm2.RSAEKTemplate, "EK")
	if err != nil {
		return ah, nil, err
	}
	if created != nil && d.ekPub == nil {
		pub, err := created.OutPublic.Contents()
		if err != nil {
			flush()
			return ah, nil, fmt.Errorf("tpmdev: EK public: %w", err)
		}
		d.ekPub = tpm2.Marshal(pub)
	}
	return ah, flush, nil
}

// loadAK loads the AK set by LoadAK.
func (d *Device) loadAK() (tpm2.AuthHandle, func(), error) {
	if !d.akSet {
		return tpm2.AuthHandle{}, nil, ErrNoAK
	}
	return d.load(&d.ak, func() (tpm2.TPMHandle, tpm2.TPM2BName, error) {
		return d.loadChild(d.akPub, d.akPriv, "AK")
	})
}

// loadChild loads an object made under the SRK. A blob made under another
// SRK fails the TPM's integrity check: ErrOtherTPM.
func (d *Device) loadChild(pub tpm2.TPM2BPublic, priv tpm2.TPM2BPrivate, what string) (tpm2.TPMHandle, tpm2.TPM2BName, error) {
	srk, flushSRK, err := d.loadSRK()
	if err != nil {
		return 0, tpm2.TPM2BName{}, err
	}
	defer flushSRK()
	r, err := tpm2.Load{ParentHandle: srk, InPublic: pub, InPrivate: priv}.Execute(d.tpm)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCIntegrity) {
			return 0, tpm2.TPM2BName{}, fmt.Errorf("%w: load %s: %v", ErrOtherTPM, what, err)
		}
		return 0, tpm2.TPM2BName{}, fmt.Errorf("tpmdev: load %s: %w", what, err)
	}
	return r.ObjectHandle, r.Name, nil
}
