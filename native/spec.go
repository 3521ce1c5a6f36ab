package native

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Protocol names the description's format and the layouts behind it;
// Version is its version. A change to the env format, the ring's layout,
// the mq framing or a control page is a new Version.
const (
	Protocol = "ipcflow-port"
	Version  = 1
)

// EnvPrefix starts the variable that describes a native stage's port.
const EnvPrefix = "IPCFLOW_PORT_"

// Env is the variable that describes port: IPCFLOW_PORT_IN for "in".
func Env(port string) string { return EnvPrefix + strings.ToUpper(port) }

// Roles of a stage on an edge.
const (
	RoleWriter = "writer"
	RoleReader = "reader"
)

// Spec is a port's description, as IPCFLOW_PORT_<PORT> carries it.
type Spec struct {
	Version int    // the protocol version it was written in
	Type    string // "shm", "mq" or "mmap"
	Role    string // RoleWriter or RoleReader
	Fd      int    // the object: shm segment, mq descriptor, mmap file
	Ctl     int    // mq, mmap: the control page's descriptor; -1 for shm
	Life    int    // the end of ipcflow's liveness pipe the stage holds
	// Reader is this reader's cursor (shm, mmap), Readers how many the
	// object has (a fan-out's readers each have one).
	Reader, Readers int
	Capacity        int64 // shm: the ring's data bytes
	MaxMsg, MsgSize int64 // mq: the queue's sizes
	Name            string
}

// VersionError is a description in a protocol version this client does
// not speak.
type VersionError struct {
	Var  string // the variable, IPCFLOW_PORT_IN
	Got  string // what it says, "ipcflow-port/2"
	Want int
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("%s: port protocol %s, this client speaks %s/%d: build the stage against this ipcflow's client (native package or ipcflow_port.h)",
		e.Var, e.Got, Protocol, e.Want)
}

// String is the description, as ipcflow writes it into the variable.
func (s Spec) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%d %s %s fd=%d", Protocol, Version, s.Type, s.Role, s.Fd)
	if s.Ctl >= 0 && s.Type != "shm" {
		fmt.Fprintf(&b, " ctl=%d", s.Ctl)
	}
	fmt.Fprintf(&b, " life=%d", s.Life)
	switch s.Type {
	case "shm", "mmap":
		if s.Role == RoleReader {
			fmt.Fprintf(&b, " reader=%d", s.Reader)
		}
		fmt.Fprintf(&b, " readers=%d", s.Readers)
		if s.Type == "shm" {
			fmt.Fprintf(&b, " capacity=%d", s.Capacity)
		}
	case "mq":
		fmt.Fprintf(&b, " maxmsg=%d msgsize=%d", s.MaxMsg, s.MsgSize)
	}
	fmt.Fprintf(&b, " name=%s", s.Name)
	return b.String()
}

// Lookup reads and parses port's variable.
func Lookup(port string) (Spec, error) {
	name := Env(port)
	v, ok := os.LookupEnv(name)
	if !ok {
		return Spec{}, fmt.Errorf("%s is not set: the stage must be marked native, and its port %s must be an mq, shm or mmap edge", name, port)
	}
	return Parse(name, v)
}

// Parse parses a description; name is the variable, for errors.
func Parse(name, v string) (Spec, error) {
	s := Spec{Ctl: -1, Life: -1, Fd: -1, Readers: 1}
	bad := func(format string, args ...any) (Spec, error) {
		return Spec{}, fmt.Errorf("%s: %s (in %q)", name, fmt.Sprintf(format, args...), v)
	}
	head, rest, _ := strings.Cut(v, " ")
	proto, ver, ok := strings.Cut(head, "/")
	if !ok || proto != Protocol {
		return bad("not an ipcflow port description")
	}
	n, err := strconv.Atoi(ver)
	if err != nil {
		return bad("bad protocol version %q", ver)
	}
	if n != Version {
		return Spec{}, &VersionError{Var: name, Got: head, Want: Version}
	}
	s.Version = n
	fields := 0
	for rest != "" {
		var tok string
		if strings.HasPrefix(rest, "name=") {
			tok, rest = rest, ""
		} else {
			tok, rest, _ = strings.Cut(rest, " ")
		}
		if tok == "" {
			continue
		}
		fields++
		key, val, isKV := strings.Cut(tok, "=")
		if !isKV {
			switch {
			case fields == 1:
				s.Type = tok
			case fields == 2:
				s.Role = tok
			default:
				return bad("unexpected word %q", tok)
			}
			continue
		}
		if key == "name" {
			s.Name = val
			continue
		}
		x, err := strconv.ParseInt(val, 10, 64)
		if err != nil || x < 0 {
			return bad("field %s=%s is not a count", key, val)
		}
		switch key {
		case "fd":
			s.Fd = int(x)
		case "ctl":
			s.Ctl = int(x)
		case "life":
			s.Life = int(x)
		case "reader":
			s.Reader = int(x)
		case "readers":
			s.Readers = int(x)
		case "capacity":
			s.Capacity = x
		case "maxmsg":
			s.MaxMsg = x
		case "msgsize":
			s.MsgSize = x
		default:
			// Unknown fields are a later minor addition: ignored.
		}
	}
	switch {
	case s.Type != "shm" && s.Type != "mq" && s.Type != "mmap":
		return bad("unknown type %q", s.Type)
	case s.Role != RoleWriter && s.Role != RoleReader:
		return bad("unknown role %q", s.Role)
	case s.Fd < 0:
		return bad("no fd=")
	case s.Type != "shm" && s.Ctl < 0:
		return bad("no ctl=")
	case s.Type == "mq" && s.MsgSize < 2:
		return bad("no msgsize=")
	case s.Reader >= s.Readers:
		return bad("reader %d of %d", s.Reader, s.Readers)
	}
	return s, nil
}

// errRole says a port was opened for the other direction.
func errRole(s Spec, want string) error {
	return fmt.Errorf("port %s is the stage's %s end of a %s edge, not its %s", s.Name, s.Role, s.Type, want)
}

// ErrReadersGone is what a writer gets once every reader of its port has
// stopped reading (exited, killed, or closed): as EPIPE on a pipe, which
// errors.Is finds in it.
var ErrReadersGone = fmt.Errorf("native port: every reader has gone: %w", errPipe)

// ErrWriterDied is what a reader gets, after the last byte its writer
// committed, when the writer ended without closing the stream (a
// SIGKILL, or an exit without Close): the stream is cut, not finished.
var ErrWriterDied = errors.New("native port: the writer ended without closing the stream (killed, or exited early)")
