package remote

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/ipcflow/ipcflow/channels"
)

// Spec is what one remote stage needs on both sides: exec builds it
// (exec/remote.go), the stand-in gets it as its argument and hands it to
// the agent as the first line of the control session.
type Spec struct {
	Stage  string // the stage's name
	Host   string // the ssh destination, expanded
	RunDir string // the local run directory: where Connect left the host's Info
	// Argv is the command to run on the host. With Self, Argv[0] stands
	// for ipcflow itself there (the stage shell is one of its roles);
	// otherwise it is looked up on the host's PATH.
	Argv []string
	Self bool
	Env  []string // added to the environment the agent's session has
	Dir  string   // working directory on the host ("": the session's own)
	// Ports are the stage's fds, Ports[i] being fd i.
	Ports []Port
}

// Port is one fd of a remote stage: which way it goes and the type of the
// edge that ends there, which the agent makes again on the host.
type Port struct {
	Write bool // the stage writes it (out, err, an out port)
	Null  bool // nothing at the other end: /dev/null on the host, no session
	// Local: the other end is a stage on the same host (a one-to-one
	// pipe or fifo edge), and the edge stays there: a pipe that the
	// reader's agent makes and whose write end it hands to the writer's
	// agent, at its socket, as a port session hands its fd. No session
	// carries it, and no byte goes through ipcflow's host. On the
	// reader's port, HandTo is the writer stage and HandFd its fd.
	Local   bool
	HandTo  string
	HandFd  int
	Type    string // the edge's type ("pipe" for ipcflow's own pipes)
	Options channels.Options
}

// Encode is the spec as one line of JSON.
func (s *Spec) Encode() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // plain data: cannot fail
	}
	return string(b)
}

// decodeSpec reads a spec Encode wrote.
func decodeSpec(line []byte) (*Spec, error) {
	s := &Spec{}
	if err := json.Unmarshal(line, s); err != nil {
		return nil, fmt.Errorf("bad remote stage spec: %w", err)
	}
	if len(s.Argv) == 0 || len(s.Ports) < 3 {
		return nil, fmt.Errorf("bad remote stage spec: no command or fewer than 3 fds")
	}
	return s, nil
}

// Info is what Connect learnt of a host, in a file of the run directory
// that the host's stand-ins read.
type Info struct {
	Host string
	Ctl  string // the master's ControlPath
	Bin  string // ipcflow on the host: "ipcflow" (its PATH's) or the copy in Dir
	Dir  string // the host's private directory for this run
	// Session is what each session opened on the host asks for, as an
	// ssh client with the user's config would.
	Session sessionOpts
}

// hostKey names a host's files in the run directory: a host may hold any
// character ssh takes (user@h:port, an alias), a file name must not, and
// the ControlPath must stay short (sun_path is 108 bytes, and ssh adds a
// 17-byte suffix while it makes the socket).
func hostKey(host string) string {
	sum := sha256.Sum256([]byte(host))
	return hex.EncodeToString(sum[:5])
}

// infoPath and ctlPath are where Connect leaves host's Info and master
// socket in the run directory dir.
func infoPath(dir, host string) string { return filepath.Join(dir, "ssh-"+hostKey(host)+".json") }
func ctlPath(dir, host string) string  { return filepath.Join(dir, "ssh-"+hostKey(host)) }
