package remote

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// PortRole is the role "port", on the host: one session of a remote stage's
// fd. args are the agent's socket, the fd and "r" (the stage reads it:
// this session's stdin carries it) or "w" (this session's stdout). It
// hands that fd to the agent and holds until the agent lets go: sshd
// stops feeding a session's stdin once the session's command has exited,
// so this process lives as long as the stream.
func PortRole(args []string) int {
	if len(args) != 3 || (args[2] != "r" && args[2] != "w") {
		fmt.Fprintln(os.Stderr, "ipcflow: internal role port: want SOCKET FD r|w")
		return 70
	}
	fd, err := strconv.Atoi(args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "ipcflow: internal role port: bad fd %q\n", args[1])
		return 70
	}
	mine := 0
	if args[2] == "w" {
		mine = 1
	}
	// Gone with the host's connection: a session hung up before the agent
	// took its fd (the run failed while starting) leaves nobody to let go
	// of this one.
	unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	if os.Getppid() == 1 {
		return 255
	}
	conn, err := dialAgent(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "ipcflow: remote port %d: %v\n", fd, err)
		return 255
	}
	defer conn.Close()
	if err := handFd(conn, fd, mine); err != nil {
		fmt.Fprintf(os.Stderr, "ipcflow: remote port %d: hand over: %v\n", fd, err)
		return 255
	}
	// From now on only the agent's copy (and the stage's) count: ours
	// would hide the stage's end of file or broken pipe.
	devnull, err := os.Open(os.DevNull)
	if err == nil {
		unix.Dup2(int(devnull.Fd()), mine)
		devnull.Close()
	}
	io.Copy(io.Discard, conn) // until the agent closes it, or dies
	return 0
}

// dialAgent connects to the agent's socket. The agent's control session
// and this one start together, so the socket may not be there yet: wait
// for it, but not for ever (the agent may have failed to start), and not
// once the run's directory on the host is gone (the run ended).
func dialAgent(path string) (*net.UnixConn, error) {
	deadline := time.Now().Add(30 * time.Second)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err == nil {
			return c, nil
		}
		if _, serr := os.Stat(filepath.Dir(path)); time.Now().After(deadline) || os.IsNotExist(serr) {
			return nil, err
		}
		time.Sleep(delay)
	}
}
