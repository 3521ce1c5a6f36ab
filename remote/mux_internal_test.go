package remote

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeMaster answers one mux connection on a socket in a temp directory
// as OpenSSH's master does (PROTOCOL.mux): hello, then a session request
// and its three fds, then answer(cmd, fds) writes the reply messages.
func fakeMaster(t *testing.T, version uint32, answer func(c *net.UnixConn, cmd string, fds []*os.File)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		writePacket(c, u32(muxHello), u32(version))
		if _, err := readPacket(c); err != nil { // the client's hello
			return
		}
		p, err := readPacket(c)
		if err != nil {
			return
		}
		// type, id, reserved, four flags, escape, term, then the command
		_, rest, _ := cutU32(p)
		_, rest, _ = cutU32(rest)
		_, rest = cutString(rest)
		rest = rest[5*4:]
		_, rest = cutString(rest)
		cmd, _ := cutString(rest)
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
		answer(c, cmd, fds)
		for _, f := range fds {
			f.Close()
		}
	}()
	return path
}

// TestMuxSession: a session's command reaches the master, the master
// gets the session's own stdin, stdout and stderr, and its exit message
// is the session's status.
func TestMuxSession(t *testing.T) {
	ctl := fakeMaster(t, muxVersion, func(c *net.UnixConn, cmd string, fds []*os.File) {
		writePacket(c, u32(muxSessionOpened), u32(1), u32(9))
		in, _ := io.ReadAll(fds[0])
		fds[1].WriteString(cmd + ":" + string(in))
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
	s, err := startSession(ctl, "echo hi", nil, in, outW, errW)
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
}

// TestMuxRefusedAndGone: a master's refusal is the session's error, with
// its reason; a master gone without an exit message is status -1; one
// speaking another protocol version is refused.
func TestMuxRefusedAndGone(t *testing.T) {
	null, _ := os.Open(os.DevNull)
	defer null.Close()
	ctl := fakeMaster(t, muxVersion, func(c *net.UnixConn, _ string, _ []*os.File) {
		writePacket(c, u32(muxDenied), u32(1), str("Permission denied"))
	})
	if _, err := startSession(ctl, "true", nil, null, null, null); err == nil || !strings.HasSuffix(err.Error(), "refused the session: Permission denied") {
		t.Errorf("refused: %v", err)
	}
	ctl = fakeMaster(t, muxVersion, func(c *net.UnixConn, _ string, _ []*os.File) {
		writePacket(c, u32(muxSessionOpened), u32(1), u32(9))
	})
	s, err := startSession(ctl, "true", nil, null, null, null)
	if err != nil {
		t.Fatal(err)
	}
	if code := s.Wait(); code != -1 {
		t.Errorf("gone: status %d, want -1", code)
	}
	ctl = fakeMaster(t, 3, func(*net.UnixConn, string, []*os.File) {})
	if _, err := startSession(ctl, "true", nil, null, null, null); err == nil || !strings.Contains(err.Error(), "speaks mux protocol 3, not 4") {
		t.Errorf("version 3: %v", err)
	}
	if _, err := startSession(filepath.Join(t.TempDir(), "none"), "true", nil, null, null, null); err == nil {
		t.Error("no master: no error")
	}
}

// TestSentEnv: SendEnv's patterns, as ssh matches them.
func TestSentEnv(t *testing.T) {
	got := sentEnv([]string{"LANG=C", "LC_ALL=x", "LCX=y", "HOME=/h", "A?=z"}, []string{"LANG", "LC_*", "A?"})
	if want := "LANG=C LC_ALL=x A?=z"; strings.Join(got, " ") != want {
		t.Errorf("sentEnv: %q, want %q", got, want)
	}
}
