package stats

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A run answers `ipcflow ps` on a unix socket in its private directory:
// a client connects and reads one Report (a fresh sample), as JSON, then
// the run closes the connection. Nothing is read from the client, so a
// client cannot make the run wait; the directory is the user's own
// (0700), and the peer's uid is checked as well.

// Control is a run's control socket, served in the background.
type Control struct {
	mu     sync.Mutex
	ln     *net.UnixListener
	closed bool
	ready  chan struct{}
}

// Serve starts answering on path, in a goroutine: making the socket costs
// the run nothing on its way to its first stage.
func Serve(path string, rec *Recorder) *Control {
	c := &Control{ready: make(chan struct{})}
	go func() {
		defer close(c.ready)
		// Under the lock, so that Close, which the run's teardown calls
		// before it removes the run directory, finds either no socket
		// made or one it can close: never one made in the directory as
		// it is being removed (rmdir: directory not empty).
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed {
			return
		}
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			return // ps says the run does not answer
		}
		ln.SetUnlinkOnClose(false) // the run directory goes whole
		c.ln = ln
		go c.accept(rec)
	}()
	return c
}

func (c *Control) accept(rec *Recorder) {
	for {
		conn, err := c.ln.AcceptUnix()
		if err != nil {
			return
		}
		go answer(conn, rec)
	}
}

func answer(conn *net.UnixConn, rec *Recorder) {
	defer conn.Close()
	if !sameUser(conn) {
		return
	}
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	json.NewEncoder(conn).Encode(rec.Snapshot(true))
}

// sameUser reports whether the peer runs as this process's user.
func sameUser(conn *net.UnixConn) bool {
	raw, err := conn.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		ok = err == nil && int(cred.Uid) == os.Geteuid()
	})
	return ok
}

// Close stops answering.
func (c *Control) Close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.closed = true
	ln := c.ln
	c.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
}

// Ask reads a live run's figures from its control socket at path.
func Ask(path string, timeout time.Duration) (*Report, error) {
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ECONNREFUSED) {
			return nil, fmt.Errorf("the run does not answer (it has ended, or is of an older ipcflow)")
		}
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	var rep Report
	if err := json.NewDecoder(conn).Decode(&rep); err != nil {
		return nil, fmt.Errorf("read the run's figures: %w", err)
	}
	return &rep, nil
}
