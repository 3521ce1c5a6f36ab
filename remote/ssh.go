package remote

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"mvdan.cc/sh/v3/shell"
)

// SSHEnv names the variable that holds the ssh command and its options
// (default "ssh"): OpenSSH reads ~/.ssh/config from the passwd entry's home,
// not $HOME, so this is how a user (or a test) gives a config of its own
// (`IPCFLOW_SSH='ssh -F /path/config'`).
const SSHEnv = "IPCFLOW_SSH"

// Timings of a connection's liveness. The master asks the server every
// aliveInterval and gives up after aliveCount unanswered; the stand-in
// pings its agent every pingInterval and the agent gives up after
// pingTimeout without one. Both bound how long a dropped link leaves
// stages running: about 4 s locally, 5 s on the host.
const (
	aliveInterval = 1
	aliveCount    = 3
	pingInterval  = time.Second
	pingTimeout   = 5 * time.Second
)

// sshWords is the ssh command: IPCFLOW_SSH split as a shell would, or ssh.
func sshWords() ([]string, error) {
	v := os.Getenv(SSHEnv)
	if strings.TrimSpace(v) == "" {
		return []string{"ssh"}, nil
	}
	words, err := shell.Fields(v, func(string) string { return "" })
	if err != nil || len(words) == 0 {
		return nil, fmt.Errorf("%s=%q: not a command", SSHEnv, v)
	}
	return words, nil
}

// common are the options of the master ipcflow starts: never a prompt (an
// authentication that needs one fails with one line), no tty, only errors.
var common = []string{"-T", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"}

// preferCiphers puts AES-GCM (in hardware on most CPUs, about twice
// chacha20-poly1305's speed there) ahead of OpenSSH's default list for
// the master, which carries every byte; the rest of the list stays. A
// Ciphers option in IPCFLOW_SSH comes first on the command line, and ssh
// keeps the first value it gets: the user's choice wins.
const preferCiphers = "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"

// quote is s as one word for a POSIX shell.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// startOwned starts cmd killed when its starter dies, in a process group
// of its own so that a terminal's ^C (or a stage group's signal) reaches
// ipcflow, which decides, and not ssh. The parent-death signal belongs to
// the starting thread (golang/go#27505): the start runs on a locked one.
func startOwned(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return cmd.Start()
}

// Version is the line `ipcflow version` prints: the module version (or
// "(devel)" and the VCS revision) and Go's. A remote ipcflow that prints
// the same is ours.
func Version() string {
	version, rev := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, kv := range bi.Settings {
			if kv.Key == "vcs.revision" && len(kv.Value) >= 12 {
				rev = " " + kv.Value[:12]
			}
		}
	}
	return fmt.Sprintf("ipcflow %s%s %s %s/%s", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// trustVersion reports whether a host's ipcflow printing our Version is
// this very build: not for a build from a modified tree, nor one with no
// revision, whose version line says nothing of its code.
func trustVersion() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return true
	}
	rev, modified := false, true
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = true
		case "vcs.modified":
			modified = kv.Value == "true"
		}
	}
	return rev && !modified
}

// boot is the master's own session on a host: it makes the run's private
// directory there, says where, and what `ipcflow version` the host's PATH
// gives, then holds until its stdin ends (the run's end, or the
// connection's) and removes the directory. A line "." ends the answer.
//
// The directory goes whatever ends the session: its end of input, or
// sshd's SIGHUP, or a SIGPIPE when nobody is left to read the answer (a
// session that ran late, after the link came back, with ipcflow gone).
const boot = `umask 077; d=$(mktemp -d "${TMPDIR:-/tmp}/ipcflow.XXXXXXXXXX") || exit 1; ` +
	`trap 'rm -rf "$d"' EXIT; trap 'exit 1' HUP INT TERM PIPE; ` +
	`echo "$d"; ipcflow version 2>/dev/null </dev/null | head -n 1; echo .; cat >/dev/null`

// Hosts are the run's connections, one per host.
type Hosts struct {
	conns []*conn
}

type conn struct {
	info   Info
	hold   io.WriteCloser // the boot session's stdin: closed, it cleans up and ends
	done   chan struct{}  // closed when the boot session (and our master) ended
	kill   func()         // ends the boot session at once
	stderr saidBuffer     // what the master, or the boot session, said
}

// Connect opens a master connection to each host, all at once, in the run
// directory dir, and readies ipcflow on each: the host's own when its
// version is ours, else a copy of this binary. record lists each control
// socket and Info file in the run's manifest before it is made. The
// error is one line per host that failed ("host h2: ssh: connect to host
// ...: No route to host"); then nothing is left open.
func Connect(hosts []string, dir string, record func(kind, name string) error) (*Hosts, error) {
	words, err := sshWords()
	if err != nil {
		return nil, err
	}
	h := &Hosts{conns: make([]*conn, len(hosts))}
	// Every path is in the manifest before any host's start: a failed
	// record then leaves nothing started (no master, no directory on a
	// host) to wait for or close.
	for i, host := range hosts {
		c := &conn{info: Info{Host: host, Ctl: ctlPath(dir, host)}}
		h.conns[i] = c
		for _, p := range []string{c.info.Ctl, infoPath(dir, host)} {
			if err := record("file", p); err != nil {
				return nil, err
			}
		}
	}
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, c := range h.conns {
		host := c.info.Host
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.open(words, dir); err != nil {
				errs[i] = fmt.Errorf("host %s: %w", host, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// hostConfig is what the user's ssh config says of host (`ssh -G`).
type hostConfig struct {
	// warm is the ControlPath of a master of the user's that is up now
	// ("" for none). It saves the run a connection's handshake and
	// authentication per host, the bulk of a start-up. It is the user's:
	// the run only opens sessions over it and never stops it.
	warm string
	// session is what a session of host asks for (SendEnv, SetEnv,
	// forwarding), which sessions opened here (mux.go) ask as an ssh
	// client would.
	session sessionOpts
	// connectTimeout: the config sets one, which the run's master keeps.
	connectTimeout bool
}

// readHostConfig asks ssh for host's config, and whether a warm master
// answers.
func readHostConfig(words []string, host string) (h hostConfig) {
	args := append(append([]string{}, words[1:]...), "-G", host)
	out, err := exec.Command(words[0], args...).Output()
	if err != nil {
		// The master's own ssh, next, says what is wrong in one line.
		return h
	}
	o := &h.session
	var sendEnv, setEnv []string
	for _, l := range strings.Split(string(out), "\n") {
		key, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		switch key {
		case "controlpath":
			h.warm = v
		case "connecttimeout":
			h.connectTimeout = v != "none"
		case "sendenv":
			sendEnv = append(sendEnv, v)
		case "setenv":
			setEnv = append(setEnv, v)
		case "forwardagent":
			o.Agent = v != "no" // yes, or a socket to forward
		case "forwardx11":
			o.X11 = v == "yes"
		}
	}
	o.Env = append(sentEnv(os.Environ(), sendEnv), setEnv...)
	if h.warm == "none" || h.warm == "" {
		h.warm = ""
		return h
	}
	c, err := dialMaster(h.warm)
	if err != nil {
		h.warm = ""
		return h
	}
	c.Close()
	return h
}

// sentEnv are the variables of environ whose names match one of the
// SendEnv patterns, in environ's order.
func sentEnv(environ, patterns []string) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		for _, p := range patterns {
			if matchPattern(name, p) {
				out = append(out, kv)
				break
			}
		}
	}
	return out
}

// matchPattern is ssh's match_pattern: '*' is any run of characters, '?'
// any one, and nothing else is special.
func matchPattern(s, p string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if matchPattern(s[i:], p[1:]) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
		default:
			if len(s) == 0 || s[0] != p[0] {
				return false
			}
		}
		s, p = s[1:], p[1:]
	}
	return len(s) == 0
}

// open starts the master (or a boot session over the user's warm one),
// reads the boot session's answer and, when the host has no ipcflow of
// ours, copies this one.
func (c *conn) open(words []string, dir string) error {
	cfg := readHostConfig(words, c.info.Host)
	c.info.Session = cfg.session
	var out io.ReadCloser
	var err error
	if cfg.warm != "" {
		c.info.Ctl = cfg.warm
		out, err = c.bootOver(cfg.warm)
	} else {
		out, err = c.startMaster(words, cfg.connectTimeout)
	}
	if err != nil {
		return err
	}
	var lines []string
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "." {
		lines = append(lines, sc.Text())
	}
	if len(lines) == 0 || len(lines) > 2 || !isBootDir(lines[0]) {
		// The boot session may be alive in its `cat`, on the stdin we
		// hold: closed, it removes its directory and ends, and so does
		// the master. Its output is read to the end meanwhile, so that
		// ssh never waits on a full pipe.
		go func() {
			io.Copy(io.Discard, out)
			out.Close()
		}()
		c.end()
		if len(lines) > 0 {
			return unexpected(lines)
		}
		return c.failure()
	}
	go func() {
		io.Copy(io.Discard, out)
		out.Close()
	}()
	c.info.Dir, c.info.Bin = lines[0], "ipcflow"
	if len(lines) < 2 || lines[1] != Version() || !trustVersion() {
		if err := c.copySelf(); err != nil {
			return err
		}
	}
	b, _ := json.Marshal(c.info)
	return os.WriteFile(infoPath(dir, c.info.Host), b, 0o600)
}

// startMaster starts the run's own master to c's host, its own session
// being the boot session; out is that session's stdout.
func (c *conn) startMaster(words []string, configTimeout bool) (out io.ReadCloser, err error) {
	args := append(append([]string{}, words[1:]...), common...)
	args = append(args, "-M", "-S", c.info.Ctl, "-o", "ControlPersist=no", "-o", "Ciphers="+preferCiphers,
		"-o", fmt.Sprintf("ServerAliveInterval=%d", aliveInterval),
		"-o", fmt.Sprintf("ServerAliveCountMax=%d", aliveCount))
	if !configTimeout {
		// ssh's own default is the system's TCP timeout, minutes.
		args = append(args, "-o", "ConnectTimeout=10")
	}
	args = append(args, c.info.Host, "--", boot)
	master := exec.Command(words[0], args...)
	master.Stderr = &c.stderr
	if c.hold, err = master.StdinPipe(); err != nil {
		return nil, err
	}
	if out, err = master.StdoutPipe(); err != nil {
		return nil, err
	}
	if err := startOwned(master); err != nil {
		return nil, fmt.Errorf("start ssh: %w", err)
	}
	c.kill = func() { master.Process.Kill() }
	c.done = make(chan struct{})
	go func() {
		master.Wait()
		close(c.done)
	}()
	return out, nil
}

// bootOver opens the boot session over the user's warm master at ctl: its
// end (ipcflow's, or the connection's) is the run's end on the host.
func (c *conn) bootOver(ctl string) (io.ReadCloser, error) {
	stdin, hold, err1 := os.Pipe()
	answer, stdout, err2 := os.Pipe()
	said, stderr, err3 := os.Pipe()
	defer closeAll(stdin, stdout, stderr) // the master has its own copies
	if err := errors.Join(err1, err2, err3); err != nil {
		closeAll(hold, answer, said)
		return nil, err
	}
	s, err := startSession(ctl, boot, c.info.Session, stdin, stdout, stderr)
	if err != nil {
		closeAll(hold, answer, said)
		return nil, err
	}
	c.hold = hold
	// A hung-up session's stderr stays open in the master until its
	// channel is freed, which a dead link may never do: the kill
	// stops waiting for it.
	c.kill = func() {
		s.Hangup()
		said.Close()
	}
	c.done = make(chan struct{})
	go func() {
		io.Copy(&c.stderr, said)
		said.Close()
		s.Wait()
		close(c.done)
	}()
	return answer, nil
}

// isBootDir reports whether l is the directory boot's mktemp made.
func isBootDir(l string) bool {
	base := filepath.Base(l)
	return filepath.IsAbs(l) && strings.HasPrefix(base, "ipcflow.") && len(base) == len("ipcflow.XXXXXXXXXX")
}

// unexpected is the error of a boot session whose answer came with
// something else on its stdout, most often what a shell's startup file
// (bash reads ~/.bashrc for sshd's commands) prints: the lines before
// the answer, or all of them when there is none, quoted on one line.
// Every session's stdout would carry it into a stage's data.
func unexpected(lines []string) error {
	for i, l := range lines {
		if i > 0 && isBootDir(l) {
			lines = lines[:i]
			break
		}
	}
	text := strings.Join(lines, "\n")
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	return fmt.Errorf("unexpected output from the host's shell before ipcflow's answer: %q (a ~/.bashrc that prints?)", text)
}

// end closes the boot session's stdin and waits for the master to exit,
// killing it after a grace.
func (c *conn) end() {
	if c.kill == nil {
		return // never started
	}
	c.hold.Close()
	select {
	case <-c.done:
	case <-time.After(closeGrace):
		c.kill()
		<-c.done
	}
}

// closeGrace is how long a master has to end once its boot session's
// stdin is closed: the session removes its directory, then ends.
const closeGrace = 5 * time.Second

// failure is why the master ended before its boot session answered: the
// last thing ssh said (one line: BatchMode turns a prompt into an error).
func (c *conn) failure() error {
	msg := strings.TrimSpace(c.stderr.String())
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
		msg = msg[i+1:]
	}
	if msg == "" {
		msg = "ssh ended before the host answered"
	}
	return errors.New(msg)
}

// copySelf copies the running binary (static, so it runs on any Linux of
// its architecture) into the host's private directory.
func (c *conn) copySelf() error {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("copy ipcflow to the host: %w", err)
	}
	defer self.Close()
	bin := c.info.Dir + "/ipcflow"
	code, stderr, err := runSession(c.info.Ctl, "cat > "+quote(bin)+" && chmod 700 "+quote(bin), c.info.Session, self)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit status %d", code)
	}
	if err != nil {
		return fmt.Errorf("copy ipcflow to the host: %v %s", err, stderr)
	}
	c.info.Bin = bin
	return nil
}

// Close ends every connection: each boot session removes its directory on
// its host, then its master exits (SIGKILL after grace if it doesn't).
func (h *Hosts) Close() error {
	if h == nil {
		return nil
	}
	for _, c := range h.conns {
		if c != nil && c.hold != nil {
			c.hold.Close()
		}
	}
	deadline := time.After(closeGrace)
	for _, c := range h.conns {
		if c == nil || c.kill == nil {
			continue // never started
		}
		select {
		case <-c.done:
		case <-deadline:
			c.kill()
			<-c.done
		}
	}
	return nil
}

// readInfo reads the Info Connect left for host in the run directory dir.
func readInfo(dir, host string) (*Info, error) {
	b, err := os.ReadFile(infoPath(dir, host))
	if err != nil {
		return nil, fmt.Errorf("no connection to %s: %w", host, err)
	}
	info := &Info{}
	return info, json.Unmarshal(b, info)
}
