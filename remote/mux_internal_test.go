package remote

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// request is a session request as the fake master read it.
type request struct {
	flags [4]uint32 // tty, X11, agent, subsystem
	term  string
	cmd   string
	env   []string
}

// fakeMaster answers one mux connection on a socket in a temp directory
// as OpenSSH's master does (PROTOCOL.mux): hello, then a session request
// and its three fds, then answer(req, fds) writes the reply messages.
func fakeMaster(t *testing.T, version uint32, answer func(c *net.UnixConn, req request, fds []*os.File)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			go serveMux(c, version, answer)
		}
	}()
	return path
}

// serveMux is the fake master's side of one connection.
func serveMux(c *net.UnixConn, version uint32, answer func(c *net.UnixConn, req request, fds []*os.File)) {
	defer c.Close()
	writePacket(c, u32(muxHello), u32(version))
	if _, err := readPacket(c); err != nil { // the client's hello
		return
	}
	p, err := readPacket(c)
	if err != nil {
		return
	}
	// type, id, reserved, four flags, escape, term, the command, env
	var req request
	_, rest, _ := cutU32(p)
	_, rest, _ = cutU32(rest)
	_, rest = cutString(rest)
	for i := range req.flags {
		req.flags[i], rest, _ = cutU32(rest)
	}
	_, rest, _ = cutU32(rest)
	req.term, rest = cutString(rest)
	req.cmd, rest = cutString(rest)
	for len(rest) > 0 {
		var e string
		e, rest = cutString(rest)
		req.env = append(req.env, e)
	}
	var fds []*os.File
	for range 3 {
		b, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := c.ReadMsgUnix(b, oob)
		if err != nil {
			return
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		got, _ := unix.ParseUnixRights(&msgs[0])
		fds = append(fds, os.NewFile(uintptr(got[0]), "fd"))
	}
	answer(c, req, fds)
	for _, f := range fds {
		f.Close()
	}
}

// TestMuxSession: a session's command, environment and forwarding flags
// reach the master, the master gets the session's own stdin, stdout and
// stderr, and its exit message is the session's status.
func TestMuxSession(t *testing.T) {
	var got request
	ctl := fakeMaster(t, muxVersion, func(c *net.UnixConn, req request, fds []*os.File) {
		got = req
		writePacket(c, u32(muxSessionOpened), u32(1), u32(9))
		in, _ := io.ReadAll(fds[0])
		fds[1].WriteString(req.cmd + ":" + string(in))
		fds[2].WriteString("said")
		fds[1].Close()
		fds[2].Close()
		writePacket(c, u32(muxExitMessage), u32(9), u32(7))
	})
	in, err := os.CreateTemp(t.TempDir(), "in")
	if err != nil {
		t.Fatal(err)
	}
	in.WriteString("input")
	in.Seek(0, 0)
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	s, err := startSession(ctl, "echo hi", sessionOpts{Env: []string{"LANG=C", "X=a b"}, Agent: true}, in, outW, errW)
	outW.Close()
	errW.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(outR)
	said, _ := io.ReadAll(errR)
	if code := s.Wait(); code != 7 || string(out) != "echo hi:input" || string(said) != "said" {
		t.Errorf("status %d, stdout %q, stderr %q; want 7, %q, %q", code, out, said, "echo hi:input", "said")
	}
	if got.flags != [4]uint32{0, 0, 1, 0} || strings.Join(got.env, ",") != "LANG=C,X=a b" {
		t.Errorf("request flags %v, env %q; want agent forwarding only and the two variables", got.flags, got.env)
	}
}

// TestMuxRefusedAndGone: a master's refusal is the session's error, with
// its reason; a master gone without an exit message is status -1; one
// speaking another protocol version is refused.
func TestMuxRefusedAndGone(t *testing.T) {
	null, _ := os.Open(os.DevNull)
	defer null.Close()
	ctl := fakeMaster(t, muxVersion, func(c *net.UnixConn, _ request, _ []*os.File) {
		writePacket(c, u32(muxDenied), u32(1), str("Permission denied"))
	})
	if _, err := startSession(ctl, "true", sessionOpts{}, null, null, null); err == nil || !strings.HasSuffix(err.Error(), "refused the session: Permission denied") {
		t.Errorf("refused: %v", err)
	}
	ctl = fakeMaster(t, muxVersion, func(c *net.UnixConn, _ request, _ []*os.File) {
		writePacket(c, u32(muxSessionOpened), u32(1), u32(9))
	})
	s, err := startSession(ctl, "true", sessionOpts{}, null, null, null)
	if err != nil {
		t.Fatal(err)
	}
	if code := s.Wait(); code != -1 {
		t.Errorf("gone: status %d, want -1", code)
	}
	ctl = fakeMaster(t, 3, func(*net.UnixConn, request, []*os.File) {})
	if _, err := startSession(ctl, "true", sessionOpts{}, null, null, null); err == nil || !strings.Contains(err.Error(), "speaks mux protocol 3, not 4") {
		t.Errorf("version 3: %v", err)
	}
	if _, err := startSession(filepath.Join(t.TempDir(), "none"), "true", sessionOpts{}, null, null, null); err == nil {
		t.Error("no master: no error")
	}
}

// TestSentEnv: SendEnv's patterns, as ssh's match_pattern matches them:
// only '*' and '?' are special.
func TestSentEnv(t *testing.T) {
	got := sentEnv([]string{"LANG=C", "LC_ALL=x", "LCX=y", "HOME=/h", "AB=z", "[X]=w", "LC_=v"}, []string{"LANG", "LC_*", "A?", "[X]"})
	if want := "LANG=C LC_ALL=x AB=z [X]=w LC_=v"; strings.Join(got, " ") != want {
		t.Errorf("sentEnv: %q, want %q", got, want)
	}
	for _, c := range []struct {
		s, p string
		ok   bool
	}{{"", "*", true}, {"abc", "a*c", true}, {"abc", "a*b", false}, {"ab", "a?", true}, {"a", "a?", false}, {"a*", "a\\*", false}} {
		if matchPattern(c.s, c.p) != c.ok {
			t.Errorf("matchPattern(%q, %q) = %v", c.s, c.p, !c.ok)
		}
	}
}

// TestConnectWarmMasterRefuses: a warm master that answers its socket but
// refuses the run's session (its MaxSessions reached, a ControlMaster=ask
// declined) fails Connect with the master's reason, at once. It crashed
// on a nil kill after 5 s: a conn that never started was waited for.
func TestConnectWarmMasterRefuses(t *testing.T) {
	ctl := fakeMaster(t, muxVersion, func(c *net.UnixConn, _ request, _ []*os.File) {
		writePacket(c, u32(muxFailure), u32(1), str("too many sessions"))
	})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ssh_config")
	if err := os.WriteFile(cfg, []byte("Host h1\n\tControlPath "+ctl+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh client (openssh-client) to ask for the config")
	}
	t.Setenv(SSHEnv, "ssh -F "+cfg)
	h, err := Connect([]string{"h1"}, dir, func(string, string) error { return nil })
	if want := "host h1: ssh master refused the session: too many sessions"; err == nil || err.Error() != want || h != nil {
		t.Errorf("Connect: %v, %v; want %q", h, err, want)
	}
}

// TestConnectStartFails: an ssh that can't be started is one line from
// Connect, and nothing is waited for.
func TestConnectStartFails(t *testing.T) {
	t.Setenv(SSHEnv, "/nonexistent/ssh")
	h, err := Connect([]string{"h1"}, t.TempDir(), func(string, string) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "host h1: start ssh:") || h != nil {
		t.Errorf("Connect: %v, %v; want a failure to start ssh", h, err)
	}
}

// saidBuffer keeps the last 64 KiB of what it is given, whole writes or
// not: ssh's error line comes last.
func TestSaidBufferKeepsTheEnd(t *testing.T) {
	var s saidBuffer
	s.Write([]byte(strings.Repeat("greeting\n", 10000)))
	s.Write([]byte("ssh: connect to host h1: No route to host\n"))
	got := s.String()
	if len(got) != saidMax || !strings.HasSuffix(got, "greeting\nssh: connect to host h1: No route to host\n") {
		t.Errorf("kept %d bytes ending %q", len(got), got[max(0, len(got)-60):])
	}
}
