// Package sshlab builds hosts for the tests of remote stages (SPEC 13) on
// this one machine: each host a network namespace joined to the root
// namespace by a veth pair, running a real sshd (Debian's openssh-server)
// with a host key and an authorized key the lab makes. A test gets the
// hosts' names, an IPCFLOW_SSH value whose config reaches them, and ways
// to cut a host's link or its sessions. Everything is removed in the
// test's cleanup, whatever the test's end. Where namespaces or sshd can't
// be had (not root, no sshd, no ip), the test skips with a message.
//
// The namespaces share this machine's filesystem and processes: "nothing
// left on a host" is checked here with Leftovers.
package sshlab

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Sshd is where Debian's openssh-server puts the daemon.
const Sshd = "/usr/sbin/sshd"

// Host is one namespace host.
type Host struct {
	Name string // its name in the lab's ssh config: h1, h2, ...
	Addr string // its address, from the root namespace
	ns   string
	veth string // the root namespace's end of its link
	sshd *exec.Cmd
}

// Lab is a set of hosts and the ssh config that reaches them.
type Lab struct {
	Hosts []*Host
	// SSH is the value for IPCFLOW_SSH: ssh with the lab's config.
	SSH string
	dir string
}

// quietRC is argv run with the user's ~/.bashrc seen as empty, in a
// mount namespace of its own: sshd runs each session's command with the
// user's shell, and Debian's bash reads ~/.bashrc for a command from
// sshd. On a machine whose root has, say, pyenv's init there, every
// session would print its complaints (concurrent sessions race on its
// shims) and spend a second starting: noise in the stderr the tests
// compare, and nothing ipcflow does. The rest of the filesystem is
// shared, so what a flow leaves on a host is still seen.
func quietRC(argv ...string) []string {
	if wrapped, ok := withRC("/dev/null", argv...); ok {
		return wrapped
	}
	return argv
}

// withRC is argv run with the user's ~/.bashrc seen as the file rc, in a
// mount namespace of its own; not ok where that can't be (no ~/.bashrc
// to mount over, no unshare).
func withRC(rc string, argv ...string) ([]string, bool) {
	home, err := os.UserHomeDir()
	bashrc := filepath.Join(home, ".bashrc")
	if _, serr := os.Stat(bashrc); err != nil || serr != nil {
		return nil, false
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return nil, false
	}
	return append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$0" "$1" && shift 2 && exec "$@"`, rc, bashrc, "--"}, argv...), true
}

// Skip skips t unless a lab can be built here, saying why.
func Skip(t testing.TB) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("remote stage tests need root (network namespaces, sshd)")
	}
	for _, tool := range []string{Sshd, "ip", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("remote stage tests need %s (apt-get install openssh-server iproute2): %v", tool, err)
		}
	}
}

// New builds n hosts, or skips t where it can't.
func New(t testing.TB, n int) *Lab {
	t.Helper()
	return build(t, n, nil)
}

// NewRC builds n hosts whose sshd sessions see the user's ~/.bashrc as
// the script rc (New's see it empty): a host whose shell prints, say, a
// greeting. It skips t where it can't (no ~/.bashrc to mount over, a
// login shell other than bash, which would not read it).
func NewRC(t testing.TB, n int, rc string) *Lab {
	t.Helper()
	Skip(t)
	if shell := loginShell(); filepath.Base(shell) != "bash" {
		t.Skipf("a host's ~/.bashrc needs bash as the login shell, not %q", shell)
	}
	file := filepath.Join(t.TempDir(), "bashrc")
	if err := os.WriteFile(file, []byte(rc), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := withRC(file); !ok {
		t.Skip("a host's own ~/.bashrc needs one here to mount over, and unshare")
	}
	return build(t, n, func(argv ...string) []string {
		wrapped, _ := withRC(file, argv...)
		return wrapped
	})
}

// loginShell is the current user's shell in /etc/passwd, or "".
func loginShell() string {
	b, _ := os.ReadFile("/etc/passwd")
	uid := strconv.Itoa(os.Getuid())
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) >= 7 && f[2] == uid {
			return f[6]
		}
	}
	return ""
}

// build builds n hosts whose sshd runs as wrap makes its argv (quietRC
// when nil).
func build(t testing.TB, n int, wrap func(argv ...string) []string) *Lab {
	t.Helper()
	Skip(t)
	if wrap == nil {
		wrap = quietRC
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	l := &Lab{dir: dir}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "id"))
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "hostkey"))
	pub, err := os.ReadFile(filepath.Join(dir, "id.pub"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600)
	hostPub, err := os.ReadFile(filepath.Join(dir, "hostkey.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	// A subnet of our own, so that labs of tests running at once (go test
	// runs packages in parallel) do not meet.
	var rnd [2]byte
	rand.Read(rnd[:])
	tag := fmt.Sprintf("%d%02x", os.Getpid()%100000, rnd[0])
	var config, known bytes.Buffer
	for i := 0; i < n; i++ {
		h := &Host{Name: fmt.Sprintf("h%d", i+1), ns: "ipcflow-lab-" + tag + "-" + strconv.Itoa(i),
			veth: fmt.Sprintf("ipl%s%d", tag, i)}
		if len(h.veth) > 15 {
			h.veth = h.veth[len(h.veth)-15:]
		}
		local := fmt.Sprintf("10.77.%d.%d", rnd[1], 4*i+1)
		h.Addr = fmt.Sprintf("10.77.%d.%d", rnd[1], 4*i+2)
		peer := h.veth + "p"
		if len(peer) > 15 {
			peer = "p" + h.veth[2:]
		}
		l.Hosts = append(l.Hosts, h)
		run("ip", "netns", "add", h.ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", h.ns).Run() })
		run("ip", "link", "add", h.veth, "type", "veth", "peer", "name", peer)
		t.Cleanup(func() { exec.Command("ip", "link", "del", h.veth).Run() })
		run("ip", "link", "set", peer, "netns", h.ns)
		run("ip", "-n", h.ns, "link", "set", "lo", "up")
		run("ip", "-n", h.ns, "addr", "add", h.Addr+"/30", "dev", peer)
		run("ip", "-n", h.ns, "link", "set", peer, "up")
		run("ip", "addr", "add", local+"/30", "dev", h.veth)
		run("ip", "link", "set", h.veth, "up")
		cfg := filepath.Join(dir, h.Name+".sshd_config")
		os.WriteFile(cfg, []byte(strings.Join([]string{
			"ListenAddress " + h.Addr,
			"HostKey " + filepath.Join(dir, "hostkey"),
			"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
			"PidFile none",
			"StrictModes no", // the test's temp directory
			"UsePAM no",
			"PermitRootLogin prohibit-password",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"UseDNS no",
			"MaxSessions 64",           // a flow's sessions share one connection
			"AcceptEnv IPCFLOW_SENT_*", // what a SendEnv in the client's config passes
			"",
		}, "\n")), 0o600)
		h.sshd = exec.Command("ip", append([]string{"netns", "exec", h.ns}, wrap(Sshd, "-D", "-e", "-f", cfg)...)...)
		// Its log (one line per connection, the lab's probes included)
		// is shown only when the test fails.
		logPath := filepath.Join(dir, h.Name+".sshd.log")
		logFile, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		h.sshd.Stderr = logFile
		t.Cleanup(func() {
			logFile.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logPath)
				t.Logf("sshd of %s:\n%s", h.Name, b)
			}
		})
		h.sshd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		if err := h.sshd.Start(); err != nil {
			t.Fatalf("start sshd: %v", err)
		}
		t.Cleanup(func() {
			h.KillSessions()
			syscall.Kill(-h.sshd.Process.Pid, syscall.SIGKILL)
			h.sshd.Wait()
		})
		fmt.Fprintf(&config, "Host %s\n\tHostName %s\n\tUser root\n\tIdentityFile %s\n\tIdentitiesOnly yes\n\tUserKnownHostsFile %s\n\tStrictHostKeyChecking yes\n\tLogLevel ERROR\n",
			h.Name, h.Addr, filepath.Join(dir, "id"), filepath.Join(dir, "known_hosts"))
		fmt.Fprintf(&known, "%s %s", h.Addr, hostPub)
	}
	// nokey reaches h1 with no key it accepts: a failed authentication.
	fmt.Fprintf(&config, "Host nokey\n\tHostName %s\n\tUser root\n\tIdentityFile %s\n\tIdentitiesOnly yes\n\tUserKnownHostsFile %s\n\tStrictHostKeyChecking yes\n\tLogLevel ERROR\n",
		l.Hosts[0].Addr, filepath.Join(dir, "hostkey"), filepath.Join(dir, "known_hosts"))
	os.WriteFile(filepath.Join(dir, "ssh_config"), config.Bytes(), 0o600)
	os.WriteFile(filepath.Join(dir, "known_hosts"), known.Bytes(), 0o600)
	l.SSH = "ssh -F " + filepath.Join(dir, "ssh_config")
	for _, h := range l.Hosts {
		waitListening(t, h.Addr+":22")
	}
	return l
}

// waitListening waits for sshd to accept connections at addr.
func waitListening(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd at %s did not start: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Command is ssh to h with the lab's config, running remote.
func (l *Lab) Command(h *Host, remote ...string) *exec.Cmd {
	args := append([]string{"-F", filepath.Join(l.dir, "ssh_config"), "-o", "BatchMode=yes", h.Name}, remote...)
	return exec.Command("ssh", args...)
}

// Env is the environment for an ipcflow that reaches the lab's hosts.
func (l *Lab) Env() []string { return append(os.Environ(), "IPCFLOW_SSH="+l.SSH) }

// LinkDown cuts h's link: its connections hang, as a pulled cable does.
func (h *Host) LinkDown() error {
	return exec.Command("ip", "link", "set", h.veth, "down").Run()
}

// KillSessions kills h's sshd sessions (the listener stays): each
// connection ends at once, as when the host reboots its sshd.
func (h *Host) KillSessions() {
	// The listener's children are the connections' sshd processes
	// ("sshd: root@notty"); what they run goes on, as it would.
	for _, pid := range children(h.sshd.Process.Pid) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// children lists pid's child processes.
func children(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, w := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(w); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// Leftovers lists what remote stages left on the hosts: agent and port
// processes, the hosts' private directories (with the copied binary).
// The namespaces share this machine's processes and files, so one scan
// covers every host; kernel objects are testkit.KernelObjects'.
func Leftovers() []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		args := strings.Split(string(b), "\x00")
		if len(args) > 2 && args[1] == "__ipcflow_internal" && (args[2] == "agent" || args[2] == "port" || args[2] == "remote") {
			out = append(out, fmt.Sprintf("process %s: %s", filepath.Base(filepath.Dir(p)), strings.Join(args[:3], " ")))
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "ipcflow.??????????"))
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			var names []string
			if ents, err := os.ReadDir(d); err == nil {
				for _, e := range ents {
					names = append(names, e.Name())
				}
			}
			out = append(out, "directory "+d+" holding "+strings.Join(names, " "))
		}
	}
	return out
}

// WaitNoLeftovers waits up to d for Leftovers to be empty, and fails t
// with what is left.
func WaitNoLeftovers(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := Leftovers()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left on the hosts after %v:\n%s", d, strings.Join(left, "\n"))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StopListening stops h's sshd from taking new connections; those made
// already go on (each is a process of its own), so a test can tell that
// a run made none.
func (l *Lab) StopListening(h *Host) {
	h.sshd.Process.Signal(syscall.SIGTERM)
	for {
		c, err := net.DialTimeout("tcp", h.Addr+":22", time.Second)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
}
