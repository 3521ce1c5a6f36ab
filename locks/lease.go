package locks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Leases: units of a run's semaphores held on behalf of `ipcflow lock`, so
// that a holder killed with SIGKILL gives its unit back. A glibc semaphore
// has no owner: a process that dies between sem_wait and sem_post loses the
// unit for good. Here the unit is taken and given back by the lease server,
// which runs in ipcflow (the supervisor, which outlives every stage); the
// holder only keeps a connection open, and the kernel closes that for it
// however it dies.
//
//	ipcflow lock (client)                     lease server (in ipcflow run)
//	---------------------                     -----------------------------
//	connect($IPCFLOW_LOCK_SOCKET)  ------->   accept; peer uid must be ours
//	"acquire NAME\n"               ------->   find NAME; Sem.Wait(ctx), where
//	                                          ctx ends if the client hangs up
//	                                          (gave up, timed out or died)
//	                               <-------   "ok\n"
//	                                     or   "unknown NAME\n" (then close)
//	                                     or   "error MESSAGE\n" (then close)
//	runs COMMAND holding the unit
//	"release\n", or close, or the  ------->   Sem.Post(); close
//	kernel closes it when the
//	process dies
//
// One connection is one unit. The server also gives back every unit it
// holds, and cancels every wait, when it is closed at the end of the run.

// LockSocketEnv names the variable through which a run tells `ipcflow
// lock` where its lease server listens.
const LockSocketEnv = "IPCFLOW_LOCK_SOCKET"

// ErrUnknownSem is returned (wrapped) by AcquireLease when the run has no
// semaphore of that name.
var ErrUnknownSem = errors.New("no such semaphore in this run")

// ErrNoLeaseServer is returned (wrapped) by AcquireLease when nothing
// listens at the socket path: a run without semaphores, or one whose
// ipcflow is gone.
var ErrNoLeaseServer = errors.New("no lease server")

// maxRequest bounds the request line; a longer one is not a client of ours.
const maxRequest = 4096

// LeaseServer serves leases on one unix socket.
type LeaseServer struct {
	path   string
	ln     *net.UnixListener
	sems   map[string]*Sem
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
	cerr   error

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	held  map[string]int
	wait  map[string]int
}

// ServeLeases listens on the unix socket path (which must not exist) and
// serves leases on sems, keyed by the script's semaphore names. A client may
// also name a semaphore by its POSIX name ("/ipcflow.RUN.db") or by its
// script name in another case ("DB" for "db") when that is unambiguous. The
// caller keeps ownership of the Sems and closes them after Close.
func ServeLeases(path string, sems map[string]*Sem) (*LeaseServer, error) {
	if len(path) >= len(unix.RawSockaddrUnix{}.Path) {
		return nil, fmt.Errorf("listen for leases: socket path %s is %d bytes, over the %d a unix socket allows", path, len(path), len(unix.RawSockaddrUnix{}.Path)-1)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen for leases: %w", err)
	}
	// The run directory is 0700 already; the socket says the same.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen for leases: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &LeaseServer{
		path: path, ln: ln, sems: sems, ctx: ctx, cancel: cancel,
		conns: map[net.Conn]struct{}{}, held: map[string]int{}, wait: map[string]int{},
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Path returns the socket's path, the value of IPCFLOW_LOCK_SOCKET.
func (s *LeaseServer) Path() string { return s.path }

// Close stops serving: it cancels waiting requests, gives back every unit
// held, closes every connection, removes the socket and returns once all of
// that is done. Calling it again does nothing.
func (s *LeaseServer) Close() error {
	s.closed.Do(func() {
		s.cancel()
		err := s.ln.Close() // also removes the socket file
		// Unblock every read; each connection's goroutine replies if it
		// must and closes its connection itself.
		s.mu.Lock()
		for c := range s.conns {
			c.SetReadDeadline(time.Now())
		}
		s.mu.Unlock()
		s.wg.Wait()
		if err != nil {
			s.cerr = fmt.Errorf("close lease server: %w", err)
		}
	})
	return s.cerr
}

// LeaseCounts reports, per semaphore (script name), how many leases are
// held and how many requests are waiting now: for --stats and diagnostics.
func (s *LeaseServer) LeaseCounts() (held, waiting map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	held, waiting = map[string]int{}, map[string]int{}
	for k, v := range s.held {
		held[k] = v
	}
	for k, v := range s.wait {
		waiting[k] = v
	}
	return held, waiting
}

func (s *LeaseServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			// EMFILE and the like: back off rather than spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

// lookup finds the semaphore a client asked for.
func (s *LeaseServer) lookup(name string) (string, *Sem) {
	if sem, ok := s.sems[name]; ok {
		return name, sem
	}
	var key string
	var found *Sem
	n := 0
	for k, sem := range s.sems {
		if strings.EqualFold(k, name) || sem.Name() == name {
			key, found = k, sem
			n++
		}
	}
	if n != 1 {
		return "", nil
	}
	return key, found
}

func (s *LeaseServer) count(m map[string]int, key string, d int) {
	s.mu.Lock()
	m[key] += d
	s.mu.Unlock()
}

// serve handles one connection: one request, at most one unit.
func (s *LeaseServer) serve(c *net.UnixConn) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	if !sameUser(c) {
		fmt.Fprintf(c, "error permission denied: not the run's user\n")
		return
	}
	r := bufio.NewReaderSize(c, maxRequest)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := r.ReadSlice('\n')
	if err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	name, ok := strings.CutPrefix(strings.TrimSuffix(string(line), "\n"), "acquire ")
	if !ok {
		fmt.Fprintf(c, "error bad request %q\n", strings.TrimSpace(string(line)))
		return
	}
	key, sem := s.lookup(name)
	if sem == nil {
		fmt.Fprintf(c, "unknown %s\n", name)
		return
	}

	// Anything more from the client (release, end of file, an error) ends
	// the lease, or the wait for it.
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for {
			l, err := r.ReadSlice('\n')
			if err != nil || string(l) == "release\n" {
				return
			}
		}
	}()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() {
		select {
		case <-gone:
			cancel()
		case <-ctx.Done():
		}
	}()

	s.count(s.wait, key, 1)
	err = sem.Wait(ctx)
	s.count(s.wait, key, -1)
	if err == nil && s.ctx.Err() != nil {
		// Close has begun: the unit may be one it just gave back.
		sem.Post()
		err = s.ctx.Err()
	}
	if err != nil {
		if s.ctx.Err() != nil {
			fmt.Fprintf(c, "error the run is ending\n")
		} else if ctx.Err() == nil {
			fmt.Fprintf(c, "error %v\n", err)
		}
		return
	}
	s.count(s.held, key, 1)
	defer s.count(s.held, key, -1)
	// The unit goes back however the lease ends: client done or gone, a
	// failed reply, or the server closing.
	defer sem.Post()
	if _, err := c.Write([]byte("ok\n")); err != nil {
		return
	}
	select {
	case <-gone:
	case <-s.ctx.Done():
	}
}

// sameUser reports whether the peer runs as our user (or as root).
func sameUser(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	return err == nil && (cred.Uid == uint32(os.Getuid()) || cred.Uid == 0)
}
