package remote

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

	"golang.org/x/sys/unix"
)

// This file speaks the client side of OpenSSH's multiplexing protocol
// (PROTOCOL.mux in OpenSSH's source; version 4, unchanged since 2010)
// to a master's ControlPath, as `ssh -S PATH host command` does. Every
// session of a run goes through a master that is there already (the
// run's own or the user's warm one), and an ssh client started per
// session costs about 4 ms of CPU in its dynamic linking and libcrypto
// set-up alone: eleven of them were a third of a 2-host start-up's CPU.
// Here a session costs a connect and three small writes.
//
// Only "passenger" sessions are used: the master is handed the session's
// stdin, stdout and stderr and moves the bytes itself, so no byte of a
// stream passes through this process, exactly as with `ssh -S`.

// Message types (mux.c).
const (
	muxHello          = 0x00000001
	muxNewSession     = 0x10000002
	muxDenied         = 0x80000002
	muxFailure        = 0x80000003
	muxExitMessage    = 0x80000004
	muxSessionOpened  = 0x80000006
	muxVersion        = 4
	muxNoEscape       = 0xffffffff
	muxMaxPacket      = 256 << 10 // the master's own limit on a packet
	muxAnswerDeadline = 10 * time.Second
)

// session is a command running on a host over a master connection.
// Closing its control connection ends the session (the master then
// closes the channel), so a session lives as long as the process that
// opened it unless it ends first.
type session struct {
	conn *net.UnixConn
	done chan struct{} // closed when the master hung up: the session ended
	exit int           // the command's exit status, or -1 when the master sent none
}

// dialMaster connects to the master at ctl and exchanges the protocol's
// hello: a master that answers it is up (what `ssh -O check` asks).
func dialMaster(ctl string) (*net.UnixConn, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: ctl, Net: "unix"})
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(muxAnswerDeadline))
	err = writePacket(c, u32(muxHello), u32(muxVersion))
	if err == nil {
		var p []byte
		if p, err = readPacket(c); err == nil {
			if t, rest, ok := cutU32(p); !ok || t != muxHello {
				err = fmt.Errorf("master at %s: no hello", ctl)
			} else if v, _, _ := cutU32(rest); v != muxVersion {
				err = fmt.Errorf("master at %s speaks mux protocol %d, not %d", ctl, v, muxVersion)
			}
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// sessionOpts are what a session asks of the master besides its command,
// as an ssh client reading the user's config for the host would ask.
type sessionOpts struct {
	Env   []string // NAME=VALUE: the variables SendEnv names, and SetEnv's
	Agent bool     // ForwardAgent
	X11   bool     // ForwardX11
}

// startSession runs command on the host of the master at ctl (the host's
// login shell reads it, as sshd's every command) with stdin, stdout and
// stderr as its own. The caller may close its copies of the three files
// once this returns.
func startSession(ctl, command string, o sessionOpts, stdin, stdout, stderr *os.File) (*session, error) {
	c, err := dialMaster(ctl)
	if err != nil {
		return nil, masterErr(err)
	}
	s := &session{conn: c, done: make(chan struct{}), exit: -1}
	if err := s.open(command, o, stdin, stdout, stderr); err != nil {
		c.Close()
		return nil, err
	}
	go s.watch()
	return s, nil
}

func (s *session) open(command string, o sessionOpts, stdin, stdout, stderr *os.File) error {
	const request = 1
	msg := [][]byte{u32(muxNewSession), u32(request), str(""),
		u32(0), flag(o.X11), flag(o.Agent), u32(0), // no tty; not a subsystem
		u32(muxNoEscape), str(os.Getenv("TERM")), str(command)}
	for _, e := range o.Env {
		msg = append(msg, str(e))
	}
	s.conn.SetDeadline(time.Now().Add(muxAnswerDeadline))
	if err := writePacket(s.conn, msg...); err != nil {
		return masterErr(err)
	}
	// One byte and one fd per message, as the master reads them.
	for _, f := range []*os.File{stdin, stdout, stderr} {
		if _, _, err := s.conn.WriteMsgUnix([]byte{0}, unix.UnixRights(int(f.Fd())), nil); err != nil {
			return fmt.Errorf("ssh master: pass the session's fds: %w", err)
		}
	}
	p, err := readPacket(s.conn)
	if err != nil {
		return masterErr(err)
	}
	s.conn.SetDeadline(time.Time{})
	t, rest, _ := cutU32(p)
	_, rest, _ = cutU32(rest) // the request id: one request per connection
	switch t {
	case muxSessionOpened:
		return nil
	case muxDenied, muxFailure:
		reason, _ := cutString(rest)
		if strings.Contains(reason, "refused by peer") {
			// sshd says no more than that when a connection has as many
			// sessions as its MaxSessions.
			reason += " (sshd's MaxSessions on the host, 10 by default, bounds a run's sessions there: see docs/remote.md)"
		}
		return fmt.Errorf("ssh master refused the session: %s", reason)
	}
	return fmt.Errorf("ssh master: unexpected answer 0x%08x", t)
}

// watch reads the master's messages until it hangs up: the session's
// exit message comes first, then the close.
func (s *session) watch() {
	defer close(s.done)
	for {
		p, err := readPacket(s.conn)
		if err != nil {
			return
		}
		if t, rest, _ := cutU32(p); t == muxExitMessage {
			_, rest, _ = cutU32(rest) // the session id
			if code, _, ok := cutU32(rest); ok {
				s.exit = int(code)
			}
		}
	}
}

// Wait waits for the session's end and returns its exit status, -1 when
// the master hung up without one (the command died of a signal, or the
// connection went).
func (s *session) Wait() int {
	<-s.done
	s.conn.Close()
	return s.exit
}

// Hangup ends the session from this side: the master stops its streams
// (the command sees end of input and a closed output) at once.
func (s *session) Hangup() { s.conn.Close() }

// masterErr says what went wrong talking to the master: most often the
// connection went (a dropped link ends the master), which ssh's own
// words (EOF, no such file) would not say.
func masterErr(err error) error {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, unix.ECONNRESET), errors.Is(err, unix.EPIPE):
		return errors.New("connection lost (the ssh master hung up)")
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ECONNREFUSED):
		return errors.New("connection lost (the ssh master is gone)")
	}
	return fmt.Errorf("ssh master: %w", err)
}

// Packets are a uint32 length, then the message: SSH wire format, every
// integer a big-endian uint32, a string its length then its bytes.

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func str(s string) []byte { return append(u32(uint32(len(s))), s...) }

func flag(b bool) []byte {
	if b {
		return u32(1)
	}
	return u32(0)
}

func writePacket(w io.Writer, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+n), uint32(n))
	for _, p := range parts {
		buf = append(buf, p...)
	}
	_, err := w.Write(buf)
	return err
}

func readPacket(r io.Reader) ([]byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n > muxMaxPacket {
		return nil, errors.New("mux packet too long")
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	return p, nil
}

func cutU32(p []byte) (v uint32, rest []byte, ok bool) {
	if len(p) < 4 {
		return 0, nil, false
	}
	return binary.BigEndian.Uint32(p), p[4:], true
}

func cutString(p []byte) (string, []byte) {
	n, rest, ok := cutU32(p)
	if !ok || uint32(len(rest)) < n {
		return "", nil
	}
	return string(rest[:n]), rest[n:]
}

// runSession runs command over the master at ctl with stdin as its input
// and returns its exit status and what it said on stderr.
func runSession(ctl, command string, o sessionOpts, stdin *os.File) (code int, stderr string, err error) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return 0, "", err
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return 0, "", err
	}
	defer r.Close()
	s, err := startSession(ctl, command, o, stdin, null, w)
	w.Close()
	if err != nil {
		return 0, "", err
	}
	var said saidBuffer
	io.Copy(&said, r) // all of it, so that the command never waits on us
	return s.Wait(), strings.TrimSpace(said.String()), nil
}

// saidBuffer keeps what a session or ssh said on stderr, for a message:
// its last 64 KiB, where ssh's error line is (a chatty host's startup
// files print before it); what came before is dropped. Safe for one
// writer and readers meanwhile.
type saidBuffer struct {
	mu sync.Mutex
	b  []byte
}

const saidMax = 64 << 10

func (s *saidBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	if len(s.b) > saidMax {
		s.b = append(s.b[:0], s.b[len(s.b)-saidMax:]...)
	}
	return len(p), nil
}

func (s *saidBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

// closeAll closes each file of fs that is there.
func closeAll(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}
