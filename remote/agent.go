package remote

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/budget"
	"github.com/ipcflow/ipcflow/channels"
	"github.com/ipcflow/ipcflow/fdio"
)

// AgentRole is the role "agent", on the host: it runs one remote stage
// and is its guardian there. args are its socket, in the host's private
// directory. Its stdin is the control session: the spec, then "ping" and
// "kill N" lines; it answers "exit N" or "signal N" on stdout. Its stderr
// is the stage's.
//
//	stand-in                         agent                      port sessions
//	  spec ─────────────────────────▶ listen SOCKET ◀──────────── fd N + SCM_RIGHTS
//	                                  every fd in: make each edge, start the stage
//	  ping (every 1 s) ─────────────▶ (none for 5 s: the link is gone)
//	  kill N (a signal ipcflow got) ▶ kill(-stage, N)
//	                                  stage reaped; outputs drained; ports let go
//	  ◀──────────────────────────── exit N | signal N
//	  stdin closed ─────────────────▶ objects removed, exit
//
// Whatever ends the control session early (ipcflow killed, the link
// dropped, SIGHUP from sshd) kills the stage's group and removes its
// objects; a dropped link also takes the host's directory (the copied
// binary), since no boot session will end to do it.
func AgentRole(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "ipcflow: internal role agent: want SOCKET")
		return 70
	}
	a := &agent{sock: args[0], control: bufio.NewReader(os.Stdin)}
	line, err := a.control.ReadBytes('\n')
	if err != nil {
		return 0 // the stand-in went before it said anything
	}
	if a.spec, err = decodeSpec(line); err != nil {
		fmt.Fprintf(os.Stderr, "ipcflow: %v\n", err)
		return 70
	}
	a.title = "stage " + a.spec.Stage + " on " + a.spec.Host
	// What the stage's processes leave orphaned comes to the agent, not
	// to the host's init, which may reap it late: awaitGroup reaps it, so
	// that a group of zombies counts as ended.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	return a.run()
}

type agent struct {
	spec    *Spec
	title   string // "stage x on h2", for messages
	sock    string
	control *bufio.Reader

	events chan event
	conns  []*net.UnixConn // the port sessions, held until the end
	held   []*os.File      // fds the agent holds until the stage started
	chans  []channels.Channel
	drains []chan struct{} // outputs' copies, done when closed
	dir    string          // this stage's objects on the host
}

// event is what the control session said, or that it ended.
type event struct {
	kill int  // a signal to pass on
	gone bool // the control session ended, or went quiet: the link is lost
	eof  bool // the session ended (rather than went quiet)
}

// listen reads the control session into a.events, and turns silence into
// an event too: the heartbeat.
func (a *agent) listen() {
	a.events = make(chan event, 8)
	lines := make(chan string)
	go func() {
		for {
			l, err := a.control.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			lines <- strings.TrimSpace(l)
		}
	}()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGHUP, unix.SIGTERM, unix.SIGINT, unix.SIGPIPE)
	go func() {
		quiet := time.NewTimer(pingTimeout)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					a.events <- event{gone: true, eof: true}
					return
				}
				quiet.Reset(pingTimeout)
				if n, ok := strings.CutPrefix(l, "kill "); ok {
					if sig, err := strconv.Atoi(n); err == nil {
						a.events <- event{kill: sig}
					}
				}
			case <-quiet.C:
				a.events <- event{gone: true}
				return
			case s := <-sigs:
				if s == unix.SIGPIPE {
					continue
				}
				a.events <- event{gone: true, eof: true}
				return
			}
		}
	}()
}

// run does the agent's work and returns its exit status.
func (a *agent) run() int {
	a.listen()
	defer a.cleanup()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: a.sock, Net: "unix"})
	if err != nil {
		return a.fail("listen for the stage's streams: %v", err)
	}
	defer ln.Close()
	files, stop := a.accept(ln)
	if stop != nil {
		return a.stopped(stop)
	}
	if files == nil {
		return a.report("exit 255")
	}
	fds, err := a.ends(files)
	if errors.As(err, &stop) {
		return a.stopped(stop)
	}
	if err != nil {
		return a.fail("%v", err)
	}
	pid, err := a.start(fds)
	for _, f := range a.held {
		f.Close()
	}
	a.held = nil
	if err != nil {
		return a.fail("%v", err)
	}
	return a.supervise(pid)
}

// accept takes every stream's fd from its port session; nil when they
// did not all come (a message was printed), lost when the control
// session went first.
func (a *agent) accept(ln *net.UnixListener) (files map[int]*os.File, stop *stoppedError) {
	want := 0
	for i, p := range a.spec.Ports {
		if !p.Null && i != 2 && p.HandTo == "" {
			want++ // a session's fd, or a stage's pipe end from its agent here
		}
	}
	type got struct {
		fd   int
		file *os.File
		conn *net.UnixConn
		err  error
	}
	gots := make(chan got)
	go func() {
		ln.SetDeadline(time.Now().Add(30 * time.Second))
		for range want {
			c, err := ln.AcceptUnix()
			if err != nil {
				gots <- got{err: err}
				return
			}
			buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(4))
			n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
			g := got{conn: c, err: err}
			if err == nil {
				g.fd, g.file, g.err = receivedFd(buf[:n], oob[:oobn])
			}
			gots <- g
		}
	}()
	files = map[int]*os.File{}
	for len(files) < want {
		select {
		case g := <-gots:
			if g.conn != nil {
				a.conns = append(a.conns, g.conn)
			}
			if g.err != nil {
				fmt.Fprintf(os.Stderr, "ipcflow: %s: its streams did not all arrive: %v\n", a.title, g.err)
				return nil, nil
			}
			files[g.fd] = g.file
			a.held = append(a.held, g.file)
		case e := <-a.events:
			if e.gone || e.kill > 0 {
				return nil, &stoppedError{e}
			}
		}
	}
	return files, nil
}

// receivedFd reads the fd number and the fd a port session sent.
// handFd hands the agent at c the file open at own, for the stage's fd
// number fd: the number as the message, the file by SCM_RIGHTS
// (receivedFd reads it).
func handFd(c *net.UnixConn, fd, own int) error {
	_, _, err := c.WriteMsgUnix([]byte(strconv.Itoa(fd)), unix.UnixRights(own), nil)
	return err
}

func receivedFd(data, oob []byte) (int, *os.File, error) {
	fd, err := strconv.Atoi(string(data))
	if err != nil {
		return 0, nil, fmt.Errorf("bad fd number %q", data)
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		return 0, nil, fmt.Errorf("fd %d: no fd received", fd)
	}
	rights, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(rights) != 1 {
		return 0, nil, fmt.Errorf("fd %d: no fd received", fd)
	}
	unix.CloseOnExec(rights[0])
	return fd, os.NewFile(uintptr(rights[0]), "session-"+strconv.Itoa(fd)), nil
}

// stoppedError is ends' error when, before the stage started, ipcflow
// passed on a signal (the run stops) or the control session went.
type stoppedError struct{ e event }

func (*stoppedError) Error() string { return "stopped before the stage started" }

// stopped ends an agent whose stage never started: the link went (the
// guardian's cleanup), or ipcflow passed on a signal, which the stage
// is reported to have died of, as a local stage killed while starting.
func (a *agent) stopped(s *stoppedError) int {
	if s.e.gone {
		a.lost(!s.e.eof)
		return 0
	}
	return a.report("signal " + strconv.Itoa(s.e.kill))
}

// handOver makes the pipe of a Local edge this stage reads (port p) and
// hands its write end to the writer's agent, as a port session hands its
// fd: the writer's agent waits for it among its streams. The read end is
// the stage's.
func (a *agent) handOver(p Port) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(filepath.Dir(a.sock), sockName(p.HandTo))
	type handed struct {
		c   *net.UnixConn
		err error
	}
	done := make(chan handed, 1)
	go func() {
		defer w.Close() // the writer's agent has its own once handed
		c, err := dialAgent(sock)
		if err == nil {
			err = handFd(c, p.HandFd, int(w.Fd()))
		}
		done <- handed{c, err}
	}()
	for {
		select {
		case h := <-done:
			if h.c != nil {
				a.conns = append(a.conns, h.c)
			}
			if h.err != nil {
				r.Close()
				return nil, fmt.Errorf("hand stage %s its pipe: %v", p.HandTo, h.err)
			}
			return r, nil
		case e := <-a.events:
			if e.gone || e.kill > 0 {
				r.Close()
				go func() { // what the dial makes, after all, goes
					if h := <-done; h.c != nil {
						h.c.Close()
					}
				}()
				return nil, &stoppedError{e}
			}
		}
	}
}

// setPipeSize sizes a pipe of port p on the host: a pipe or fifo edge's
// own size as planned (the script's size=, or exec's for an edge that
// crosses hosts, remotePipeSize) where the budget has room (deep > 0),
// else deep; a planned size below the kernel's default is set anyway,
// since shrinking is always allowed.
func setPipeSize(f *os.File, p Port, deep int64) {
	size := deep
	if p.Type == "pipe" || p.Type == "fifo" {
		if o := p.Options.Size; o > 0 && (deep > 0 || o < 64<<10) {
			size = o
		}
	}
	if size > 0 {
		unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, int(size))
	}
}

// sessionPipeSize is what the agent asks of each session's pipe, where
// the user's pipe budget on the host has room for all of them.
const sessionPipeSize = 1 << 20

// ends makes the stage's fd table on this host: for each stream, the
// edge's own type again, fed from (or drained into) its session; a pipe
// edge is the session's own pipe, with no copy at all.
func (a *agent) ends(files map[int]*os.File) ([]uintptr, error) {
	fds := make([]uintptr, len(a.spec.Ports))
	var env channels.Env
	// sshd's pipes (64 KiB) between it and the stage are deepened, as
	// exec deepens a local edge an ssh master moves: sshd reads or
	// writes them 16 to 32 KiB per wake-up. All or none, and only
	// within the budget (with its reserve for the stage's own pipes):
	// past it, every new pipe of the user's would shrink to 8 KiB.
	deep, pipes := int64(0), len(files)
	for _, p := range a.spec.Ports {
		if p.HandTo != "" {
			pipes++ // a Local edge's pipe, made here
		}
	}
	if size, warn := budget.PlanPipeSize(pipes, sessionPipeSize); warn == "" {
		deep = size
	}
	for i, p := range a.spec.Ports {
		switch {
		case i == 2:
			fds[i] = 2 // the control session's stderr: the stage's err
			continue
		case p.Null:
			null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
			if err != nil {
				return nil, err
			}
			a.held = append(a.held, null)
			fds[i] = null.Fd()
			continue
		}
		if p.HandTo != "" {
			r, err := a.handOver(p)
			if err != nil {
				return nil, err
			}
			setPipeSize(r, p, deep)
			a.held = append(a.held, r)
			fds[i] = r.Fd()
			continue
		}
		session := files[i]
		setPipeSize(session, p, deep)
		if p.Local || !a.bridged(i, p) {
			fds[i] = session.Fd()
			continue
		}
		if a.dir == "" {
			var err error
			if a.dir, env, err = a.objectDir(); err != nil {
				return nil, err
			}
		}
		opts := p.Options
		opts.Path = "" // a path names a place on ipcflow's host, not this one
		ch, err := channels.Open(env, channels.Spec{ID: "p" + strconv.Itoa(i), Type: p.Type, Options: opts, Readers: 1})
		if err != nil {
			return nil, fmt.Errorf("fd %d: make its %s edge here: %w", i, p.Type, err)
		}
		a.chans = append(a.chans, ch)
		done := make(chan struct{})
		var end *os.File
		if p.Write {
			end = ch.Writer()
			r := ch.Reader(0)
			ownNonblock(r)
			a.drains = append(a.drains, done)
			go func() {
				defer close(done)
				fdio.Move(session, r)
				r.Close()
				session.Close()
			}()
		} else {
			end = ch.Reader(0)
			w := ch.Writer()
			ownNonblock(w)
			go func() {
				defer close(done)
				fdio.Move(w, session)
				w.Close()
				session.Close()
			}()
		}
		a.held = slicesDelete(a.held, session)
		a.held = append(a.held, end)
		fds[i] = end.Fd()
	}
	return fds, nil
}

// ownNonblock makes the agent's own end of a bridged edge non-blocking
// where it is a socket (a unix socket's read end, a tcp one's), so that
// fdio.Move splices it, waiting in poll(2). Move splices no blocking
// socket: such a splice waits for the socket holding the lock of the
// session's pipe, and sshd, at that pipe's other end, stops with it. The
// stage has the edge's other end, so this description is the agent's to
// change, as a mover's socket is ipcflow's (movers.nonblockSocket). Where
// that fails, Move reads and writes the socket instead: as safe, with a
// copy more.
func ownNonblock(f *os.File) {
	if fd, err := fdio.FD(f); err == nil && fdio.KindOf(fd) == fdio.KindSocket {
		unix.SetNonblock(fd, true)
	}
}

// bridged reports whether fd i's edge is made again here, bridged to its
// session: every type but a pipe (the session is a pipe already), and not
// a declared port whose end would be no pipe (a FIFO, a socket), which a
// command opening /dev/fd/N could not open; exec does the same locally.
func (a *agent) bridged(i int, p Port) bool {
	if p.Type == "" || p.Type == "pipe" {
		return false
	}
	if i >= 3 {
		w, r := channels.OpensAsFile(p.Type, p.Options)
		if p.Write && !w || !p.Write && !r {
			return false
		}
	}
	return true
}

func slicesDelete(fs []*os.File, f *os.File) []*os.File {
	out := fs[:0]
	for _, g := range fs {
		if g != f {
			out = append(out, g)
		}
	}
	return out
}

// objectDir makes the private directory of this stage's objects, beside
// its socket in the host's directory, and the channels' env for it.
func (a *agent) objectDir() (string, channels.Env, error) {
	var raw [8]byte
	rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	dir := strings.TrimSuffix(a.sock, ".sock") + ".d"
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", channels.Env{}, fmt.Errorf("make the stage's directory: %w", err)
	}
	env := channels.Env{RunDir: dir, Prefix: "ipcflow." + id + ".", Record: func(string, string) error { return nil }}
	return dir, env, nil
}

// start starts the stage in a process group of its own, killed if the
// agent dies (on a locked thread: golang/go#27505).
func (a *agent) start(fds []uintptr) (int, error) {
	path, argv := a.spec.Argv[0], append([]string{}, a.spec.Argv...)
	env := append(os.Environ(), a.spec.Env...)
	if a.spec.Self {
		self, err := os.Executable()
		if err != nil {
			return 0, err
		}
		path, argv[0] = self, "ipcflow"
	} else if !strings.Contains(path, "/") {
		found, err := lookPath(path, env)
		if err != nil {
			return 0, fmt.Errorf("%s: command not found", path)
		}
		path = found
	}
	if a.spec.Dir != "" {
		if fi, err := os.Stat(a.spec.Dir); err != nil || !fi.IsDir() {
			return 0, fmt.Errorf("dir %s: no such directory", a.spec.Dir)
		}
	}
	attr := &syscall.ProcAttr{Dir: a.spec.Dir, Env: env, Files: fds,
		Sys: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return syscall.ForkExec(path, argv, attr)
}

// lookPath finds name on env's PATH.
func lookPath(name string, env []string) (string, error) {
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("not found")
}

// supervise waits for the stage, passing signals on, and reports how it
// ended once its outputs are drained.
func (a *agent) supervise(pid int) int {
	type exit struct {
		ws  unix.WaitStatus
		fig Figures
	}
	exited := make(chan exit, 1)
	go func() {
		// Its io is in /proc until it is reaped: read it before.
		var info unix.Siginfo
		for unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
		}
		io, _ := liveFigures(pid)
		var ws unix.WaitStatus
		var ru unix.Rusage
		for {
			_, err := unix.Wait4(pid, &ws, 0, &ru)
			if err != unix.EINTR {
				break
			}
		}
		exited <- exit{ws, endFigures(io, &ru)}
	}()
	figures := time.NewTicker(figuresEvery)
	defer figures.Stop()
	stopping := false
	for {
		select {
		case <-figures.C:
			if f, ok := liveFigures(pid); ok {
				fmt.Fprintln(os.Stdout, f.line())
			}
		case e := <-a.events:
			if e.kill > 0 {
				unix.Kill(-pid, unix.Signal(e.kill))
				stopping = true
				continue
			}
			if e.gone {
				unix.Kill(-pid, unix.SIGKILL)
				<-exited
				a.lost(!e.eof)
				return 0
			}
		case x := <-exited:
			if stopping {
				if e, gone := a.awaitGroup(pid); gone {
					a.lost(!e.eof)
					return 0
				}
			}
			// What the stage left running in its group goes with it, as
			// at a local run's end: it could hold an output open.
			unix.Kill(-pid, unix.SIGKILL)
			if e, gone := a.drain(); gone {
				a.lost(!e.eof)
				return 0
			}
			a.letGo()
			fmt.Fprintln(os.Stdout, x.fig.line())
			if x.ws.Signaled() {
				return a.report("signal " + strconv.Itoa(int(x.ws.Signal())))
			}
			return a.report("exit " + strconv.Itoa(x.ws.ExitStatus()))
		}
	}
}

// drain waits until every output's copy is done, or until the control
// session is gone (gone, and the event that says so). A signal arriving
// meanwhile has no stage left to reach (its group is dead and reaped:
// the id may be another's now), and it must not end the wait on the
// drain at hand: letGo would close channels with output still in them.
// figuresEvery is how often the agent sends the stage's figures while it
// runs: the stand-in's ping's pace, and about --stats's sampling of io.
const figuresEvery = time.Second

// awaitGroup waits, once the stage's own process has ended while ipcflow
// stops the run (a signal passed on: SIGTERM, ^C, another stage's
// failure), for the rest of its group to end, passing on any further
// signal: a shell's trap still cleaning up gets the rest of the grace
// period, as exec gives a local stage's leftovers. ipcflow's SIGKILL of
// the stand-in at the grace's end closes the control session, which ends
// the wait (gone).
func (a *agent) awaitGroup(pid int) (e event, gone bool) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for reapGroup(pid); unix.Kill(-pid, 0) == nil; reapGroup(pid) {
		select {
		case e = <-a.events:
			if e.gone {
				unix.Kill(-pid, unix.SIGKILL)
				return e, true
			}
			if e.kill > 0 {
				unix.Kill(-pid, unix.Signal(e.kill))
			}
		case <-tick.C:
		}
	}
	return event{}, false
}

// reapGroup reaps the group's orphans that the agent holds as their
// subreaper: a zombie would still answer kill(-pgid, 0).
func reapGroup(pgid int) {
	var ws unix.WaitStatus
	for {
		if pid, err := unix.Wait4(-pgid, &ws, unix.WNOHANG, nil); pid <= 0 && err != unix.EINTR {
			return
		}
	}
}

func (a *agent) drain() (e event, gone bool) {
	for _, d := range a.drains {
		for done := false; !done; {
			select {
			case <-d:
				done = true
			case e = <-a.events:
				if e.gone {
					return e, true
				}
			}
		}
	}
	return event{}, false
}

// letGo releases the port sessions: they exit, and their streams close.
func (a *agent) letGo() {
	for _, ch := range a.chans {
		ch.Close()
	}
	a.chans = nil
	for _, c := range a.conns {
		c.Close()
	}
	a.conns = nil
}

// report tells the stand-in how the stage ended and waits for it to hang
// up (its stdin closing), so that nothing of the stage is left when the
// run goes on.
func (a *agent) report(status string) int {
	fmt.Fprintln(os.Stdout, status)
	for e := range a.events {
		if e.gone {
			break
		}
	}
	return 0
}

// fail says why the stage could not start and reports it as a failed
// start: 126, as a program that cannot run.
func (a *agent) fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "ipcflow: %s: %s\n", a.title, fmt.Sprintf(format, args...))
	status := "exit 126"
	if strings.HasSuffix(format+fmt.Sprint(args...), "command not found") {
		status = "exit 127"
	}
	a.letGo()
	return a.report(status)
}

// lost ends a stage whose connection is gone. quiet: the link went silent
// (rather than closed), so the boot session that would remove the host's
// directory is stuck too: remove it here.
func (a *agent) lost(quiet bool) {
	a.letGo()
	if quiet {
		a.cleanup()
		os.RemoveAll(filepath.Dir(a.sock))
	}
}

// cleanup closes what the agent still holds and removes its objects.
func (a *agent) cleanup() {
	for _, f := range a.held {
		f.Close()
	}
	a.held = nil
	a.letGo()
	if a.dir != "" {
		os.RemoveAll(a.dir)
	}
	os.Remove(a.sock)
}
