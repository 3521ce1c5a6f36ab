package remote

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// forwarded are the signals the stand-in passes on to its remote stage,
// as exec passes them to a local stage's group. SIGKILL and SIGSTOP
// cannot be caught: a stand-in killed takes its sessions with it (the
// master hangs up a session whose socket closed) and the agent, its
// control session gone, kills the stage.
var forwarded = []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT,
	unix.SIGUSR1, unix.SIGUSR2, unix.SIGCONT, unix.SIGWINCH}

// StandIn is the role "remote", on ipcflow's host: the process exec
// starts for a remote stage, with the stage's own fd table. args is the
// stage's Spec. It opens the control session (the agent) and one session
// per stream over the host's master, each session's stdin or stdout
// being the stream's fd itself, so no byte passes through this process.
// It returns how the stage ended on the host, as an exit code or a
// signal (exec's role then dies of that signal), so that exec sees
// exactly what a local stage's end would have shown.
func StandIn(args []string) (code int, sig unix.Signal) {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "ipcflow: internal role remote: want SPEC")
		return 70, 0
	}
	spec, err := decodeSpec([]byte(args[0]))
	if err != nil {
		fmt.Fprintf(os.Stderr, "ipcflow: %v\n", err)
		return 70, 0
	}
	title := "stage " + spec.Stage + " on " + spec.Host
	info, err := readInfo(spec.RunDir, spec.Host)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ipcflow: %s: %v\n", title, err)
		return 255, 0
	}
	sock := info.Dir + "/" + sockName(spec.Stage)
	bin := quote(info.Bin) + " __ipcflow_internal "
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return fail(title, err)
	}
	// Caught from now, so that a signal is passed on rather than lost.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	agentIn, toAgent, err1 := os.Pipe()
	fromAgent, agentOut, err2 := os.Pipe()
	if err := errors.Join(err1, err2); err != nil {
		return fail(title, err)
	}
	control, err := startSession(info.Ctl, bin+"agent "+quote(sock), info.Session, agentIn, agentOut, os.Stderr)
	closeAll(agentIn, agentOut) // the master has its own copies
	if err != nil {
		return fail(title, err)
	}
	if _, err := toAgent.Write([]byte(args[0] + "\n")); err != nil {
		return fail(title, err)
	}
	var ports []*portSession
	for fd, p := range spec.Ports {
		if fd == 2 || p.Null || p.Local {
			if p.Local {
				os.NewFile(uintptr(fd), "").Close() // the host's pipe is the edge
			}
			continue
		}
		stream := os.NewFile(uintptr(fd), "fd"+strconv.Itoa(fd))
		stdin, stdout, dir := stream, null, "r"
		if p.Write {
			stdin, stdout, dir = null, stream, "w"
		}
		port, err := startPort(info.Ctl, bin+"port "+quote(sock)+" "+strconv.Itoa(fd)+" "+dir, info.Session, stdin, stdout)
		// The master has its own copy now; ours would hide the
		// stream's end.
		stream.Close()
		if err != nil {
			return fail(title, err)
		}
		ports = append(ports, port)
	}
	null.Close()

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(fromAgent)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	figures := FiguresPath(spec.RunDir, spec.Stage)
	status := ""
	for status == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				status = "lost"
				break
			}
			if rest, ok := strings.CutPrefix(l, "fig "); ok {
				if f, ok := parseFigures(rest); ok {
					f.keep(figures)
				}
				continue
			}
			status = l
		case s := <-sigs:
			fmt.Fprintf(toAgent, "kill %d\n", s.(unix.Signal))
		case <-ping.C:
			toAgent.Write([]byte("ping\n"))
		}
	}
	signal.Stop(sigs)
	if status == "lost" {
		// The sessions go too: what they carried is cut anyway.
		for _, p := range ports {
			p.Hangup()
		}
	}
	for _, p := range ports {
		p.Wait()
	}
	toAgent.Close()
	control.Wait()
	if n, ok := strings.CutPrefix(status, "exit "); ok {
		if code, err := strconv.Atoi(n); err == nil {
			return code, 0
		}
	}
	if n, ok := strings.CutPrefix(status, "signal "); ok {
		if s, err := strconv.Atoi(n); err == nil {
			return 128 + s, unix.Signal(s)
		}
	}
	fmt.Fprintf(os.Stderr, "ipcflow: %s: connection lost\n", title)
	return 255, 0
}

// portSession is a port's session, whose stderr is shown only when it
// fails: there the host's shell says what its startup files print to
// stderr (a ~/.bashrc's greeting), once per session, and a stage has a
// session per stream besides its control session, whose stderr is the
// stage's own; the port itself says why it failed.
type portSession struct {
	*session
	said saidBuffer
	r    *os.File
	done chan struct{} // closed when its stderr ended
}

func startPort(ctl, command string, o sessionOpts, stdin, stdout *os.File) (*portSession, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	s, err := startSession(ctl, command, o, stdin, stdout, w)
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	p := &portSession{session: s, r: r, done: make(chan struct{})}
	go func() {
		io.Copy(&p.said, r)
		close(p.done)
	}()
	return p, nil
}

// Wait waits for the session's end, and shows what it said if it failed.
// A hung-up session's stderr may stay open in the master (a dead link):
// what came within a second is shown.
func (p *portSession) Wait() {
	if code := p.session.Wait(); code != 0 {
		select {
		case <-p.done:
		case <-time.After(time.Second):
		}
		os.Stderr.WriteString(p.said.String())
	}
	p.r.Close()
}

// fail reports a stand-in that could not do its part: ssh's status for a
// connection that failed.
func fail(title string, err error) (int, unix.Signal) {
	fmt.Fprintf(os.Stderr, "ipcflow: %s: %v\n", title, err)
	return 255, 0
}

// sockName is the name of a stage's agent socket in the host's directory:
// the stage's name while the path stays well within sun_path's 108 bytes.
func sockName(stage string) string {
	if len(stage) > 32 {
		stage = hostKey(stage)
	}
	return stage + ".sock"
}
