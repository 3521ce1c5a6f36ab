package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/ipcflow/ipcflow/locks"
)

// LockCmd runs a command holding one unit of a semaphore (SPEC 7, 8).
//
// Inside a run (IPCFLOW_LOCK_SOCKET set) the unit is a lease from the run's
// supervisor, which gives it back even if this process is killed with
// SIGKILL (locks/lease.go). Outside a run, or for a POSIX name the run does
// not know, it takes the semaphore itself: then a SIGKILL loses the unit, as
// it would for a C program between sem_wait and sem_post.
type LockCmd struct {
	Timeout time.Duration `help:"Give up after waiting this long for the unit: one line on stderr, exit status 1 (0: wait as long as it takes)." env:"IPCFLOW_LOCK_TIMEOUT"`
	Sem     string        `arg:"" help:"Semaphore: a name declared with 'sem' in the script (found through IPCFLOW_SEM_<NAME>), or a POSIX name /NAME."`
	Command []string      `arg:"" passthrough:"" help:"Command to run holding the unit, after --."`
}

// lockTimeoutStatus is the exit status when --timeout expires: the command
// never ran, which is a failure of the stage like any other.
const lockTimeoutStatus = 1

func (c *LockCmd) Run(s *Streams) error {
	argv := c.Command
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return &ExitStatus{Code: usageStatus, Msg: "lock: no command: ipcflow lock SEM [--timeout D] -- COMMAND..."}
	}

	// A signal while waiting ends the wait; once COMMAND runs, signals go
	// to it and we wait for it to end before giving the unit back.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if c.Timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	got, watched := make(chan struct{}), make(chan struct{})
	var caught os.Signal
	go func() {
		defer close(watched)
		select {
		case caught = <-sigs:
			cancel()
		case <-got:
		}
	}()
	release, err := c.acquire(ctx)
	close(got)
	<-watched
	if caught != nil {
		// Ended while waiting (or just as the unit came): COMMAND never runs.
		if err == nil {
			release()
		}
		return &ExitStatus{Code: 128 + int(caught.(syscall.Signal))}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &ExitStatus{Code: lockTimeoutStatus, Msg: fmt.Sprintf("lock: timed out after %v waiting for semaphore %s", c.Timeout, c.Sem)}
	}
	if err != nil {
		return err
	}

	code, err := runHolding(s, argv, sigs)
	if rerr := release(); rerr != nil {
		fmt.Fprintf(s.Stderr, "ipcflow: lock: %v\n", rerr)
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitStatus{Code: code}
	}
	return nil
}

// acquire takes one unit of c.Sem, through the run's lease server when
// there is one.
func (c *LockCmd) acquire(ctx context.Context) (release func() error, err error) {
	if sock := os.Getenv(locks.LockSocketEnv); sock != "" {
		release, err := locks.AcquireLease(ctx, sock, c.Sem)
		switch {
		case err == nil:
			return release, nil
		case errors.Is(err, locks.ErrUnknownSem):
			if !strings.HasPrefix(c.Sem, "/") {
				return nil, unknownSem(c.Sem)
			}
			// A POSIX semaphore that is not the run's: take it directly.
		case errors.Is(err, locks.ErrNoLeaseServer):
			// A run without semaphores has no server: resolve as
			// outside a run (an unknown name, or a POSIX name).
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			return nil, err
		default:
			return nil, fmt.Errorf("lock: %w", err)
		}
	}

	name := c.Sem
	if !strings.HasPrefix(name, "/") {
		name = os.Getenv(locks.SemEnv(c.Sem))
		if name == "" {
			return nil, unknownSem(c.Sem)
		}
	}
	sem, err := locks.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &ExitStatus{Code: usageStatus, Msg: fmt.Sprintf("lock: semaphore %s does not exist", name)}
	}
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := sem.Wait(ctx); err != nil {
		sem.Close()
		return nil, err
	}
	return func() error {
		err := sem.Post()
		sem.Close()
		return err
	}, nil
}

// unknownSem is the one-line error for a SEM this environment cannot
// resolve, listing the semaphores it can see.
func unknownSem(sem string) error {
	var seen []string
	for _, kv := range os.Environ() {
		if k, _, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, locks.SemEnvPrefix) {
			seen = append(seen, k)
		}
	}
	sort.Strings(seen)
	msg := fmt.Sprintf("lock: unknown semaphore %q: %s is not set", sem, locks.SemEnv(sem))
	if len(seen) > 0 {
		msg += " (this environment has " + strings.Join(seen, ", ") + ")"
	} else {
		msg += " (no IPCFLOW_SEM_* variables: declare it with 'sem' in the script, or give a POSIX name /NAME)"
	}
	return &ExitStatus{Code: usageStatus, Msg: msg}
}

// runHolding runs argv with the standard streams, forwarding the signals
// that arrive on sigs, and returns its exit status (128+N when signal N
// ended it; 127 when it cannot be found, 126 when it cannot be run).
func runHolding(s *Streams, argv []string, sigs <-chan os.Signal) (int, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.Stdin, s.Stdout, s.Stderr
	// If we die, the command must not go on believing it holds the unit:
	// the parent-death signal belongs to the thread that forks
	// (golang/go#27505), so keep this goroutine on it while starting.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	err := cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return 0, &ExitStatus{Code: 127, Msg: fmt.Sprintf("lock: %s: command not found", argv[0])}
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // "fork/exec PATH: " says nothing to a user
		}
		return 0, &ExitStatus{Code: 126, Msg: fmt.Sprintf("lock: %s: %v", argv[0], err)}
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-sigs:
				cmd.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return 0, fmt.Errorf("lock: wait for %s: %w", argv[0], err)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}
