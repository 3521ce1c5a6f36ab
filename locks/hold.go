package locks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Hold is the work of `ipcflow lock` (SPEC 7, 8): run a command holding
// one unit of a semaphore.
//
// Inside a run (LockSocketEnv set) the unit is a lease from the run's
// supervisor, which gives it back even if this process is killed with
// SIGKILL (lease.go). Outside a run, or for a POSIX name the run does not
// know, it takes the semaphore itself: then a SIGKILL loses the unit, as
// it would for a C program between sem_wait and sem_post.
type Hold struct {
	Sem     string        // a name declared with `sem` (found through SemEnv), or a POSIX name /NAME
	Timeout time.Duration // give up waiting for the unit after this long; 0: wait as long as it takes
	Argv    []string      // the command
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer // also for a unit that could not be given back
}

// Exit statuses of Hold besides the command's own.
const (
	holdTimeoutStatus = 1 // the wait timed out: the command never ran, a failure like any other
	holdUsageStatus   = 2 // an unknown semaphore (SPEC 6's usage status)
)

// holdError is a failure with the exit status it means.
type holdError struct {
	status int
	msg    string
}

func (e *holdError) Error() string { return e.msg }

// Run takes the unit, runs the command and gives the unit back once the
// command has ended, and returns the exit status for `ipcflow lock`: the
// command's (128+N when signal N ended it; 127 when it cannot be found,
// 126 when it cannot be run). A signal while waiting ends the wait, and the
// command never runs (128+N); once it runs, SIGINT, SIGTERM and SIGHUP are
// passed on to it. A non-nil error is a message to print: with status 1
// unless it says otherwise.
func (h *Hold) Run() (int, error) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if h.Timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, h.Timeout)
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
	release, err := h.acquire(ctx)
	close(got)
	<-watched
	if caught != nil {
		// Ended while waiting (or just as the unit came): the command never runs.
		if err == nil {
			release()
		}
		return 128 + int(caught.(syscall.Signal)), nil
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return holdTimeoutStatus, fmt.Errorf("lock: timed out after %v waiting for semaphore %s", h.Timeout, h.Sem)
	}
	if err != nil {
		return statusOf(err)
	}

	code, err := h.runCommand(sigs)
	if rerr := release(); rerr != nil {
		fmt.Fprintf(h.Stderr, "ipcflow: lock: %v\n", rerr)
	}
	if err != nil {
		return statusOf(err)
	}
	return code, nil
}

// statusOf is the exit status err means, and err.
func statusOf(err error) (int, error) {
	var he *holdError
	if errors.As(err, &he) {
		return he.status, err
	}
	return 1, err
}

// acquire takes one unit of h.Sem, through the run's lease server when
// there is one.
func (h *Hold) acquire(ctx context.Context) (release func() error, err error) {
	if sock := os.Getenv(LockSocketEnv); sock != "" {
		release, err := AcquireLease(ctx, sock, h.Sem)
		switch {
		case err == nil:
			return release, nil
		case errors.Is(err, ErrUnknownSem):
			if !strings.HasPrefix(h.Sem, "/") {
				return nil, unknownSem(h.Sem)
			}
			// A POSIX semaphore that is not the run's: take it directly.
		case errors.Is(err, ErrNoLeaseServer):
			// A run without semaphores has no server: resolve as
			// outside a run (an unknown name, or a POSIX name).
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			return nil, err
		default:
			return nil, fmt.Errorf("lock: %w", err)
		}
	}

	name := h.Sem
	if !strings.HasPrefix(name, "/") {
		name = os.Getenv(SemEnv(h.Sem))
		if name == "" {
			return nil, unknownSem(h.Sem)
		}
	}
	sem, err := Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &holdError{holdUsageStatus, fmt.Sprintf("lock: semaphore %s does not exist", name)}
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

// unknownSem is the one-line error for a semaphore this environment cannot
// resolve, listing the semaphores it can see.
func unknownSem(sem string) error {
	var seen []string
	for _, kv := range os.Environ() {
		if k, _, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, SemEnvPrefix) {
			seen = append(seen, k)
		}
	}
	sort.Strings(seen)
	msg := fmt.Sprintf("lock: unknown semaphore %q: %s is not set", sem, SemEnv(sem))
	if len(seen) > 0 {
		msg += " (this environment has " + strings.Join(seen, ", ") + ")"
	} else {
		msg += " (no IPCFLOW_SEM_* variables: declare it with 'sem' in the script, or give a POSIX name /NAME)"
	}
	return &holdError{holdUsageStatus, msg}
}

// runCommand runs h.Argv with h's streams, passing on the signals that
// arrive on sigs, and returns its exit status.
func (h *Hold) runCommand(sigs <-chan os.Signal) (int, error) {
	argv := h.Argv
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = h.Stdin, h.Stdout, h.Stderr
	// If we die, the command must not go on believing it holds the unit:
	// the parent-death signal belongs to the thread that forks
	// (golang/go#27505), so keep this goroutine on it while starting.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	err := cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return 0, &holdError{127, fmt.Sprintf("lock: %s: command not found", argv[0])}
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // "fork/exec PATH: " says nothing to a user
		}
		return 0, &holdError{126, fmt.Sprintf("lock: %s: %v", argv[0], err)}
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
