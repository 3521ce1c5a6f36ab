package exec

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

// Builtins of bash that mvdan.cc/sh's interpreter lacks, done by the stage
// shell itself: `trap` on signals (the interpreter knows only EXIT and
// ERR) and `ulimit`. The call handler renames such a call to one of these
// names, which no script can spell (a NUL byte), so that it reaches the
// exec handler, which has the call's streams and can run builtins.
const (
	trapBuiltin   = "\x00trap"
	ulimitBuiltin = "\x00ulimit"
	raiseBuiltin  = "\x00raise" // kill -SIG $$ of a trapped SIG, or one that ends the shell
)

// shellTraps are the stage shell's signal traps. A trapped signal is
// caught by a goroutine and its command runs, as in bash, once the
// foreground program has ended (teardown's SIGTERM reaches the program
// too, through the stage's process group) or before the next command.
type shellTraps struct {
	mu       sync.Mutex
	code     map[unix.Signal]string // the trapped signals; "" = ignored
	exitCode string                 // EXIT's and ERR's, for printing;
	errCode  string                 // the interpreter runs them
	pending  []unix.Signal          // caught, their commands not yet run
	any      atomic.Bool            // pending is not empty
	caught   chan os.Signal
	deaths   chan os.Signal // defaultDeaths and SIGQUIT, untrapped
	watching chan struct{}  // closed once deaths is notified of them
}

// defaultDeaths are the signals whose default action ends a process but
// which Go's runtime would ignore (USR1, ALRM, ...) or turn into a crash
// with a goroutine dump (SEGV, ABRT, ... when sent by kill): the stage
// shell dies of them, as bash does, unless a trap is set. SIGQUIT bash
// ignores, and so does the stage shell: caught and dropped (not ignored,
// which the programs it starts would inherit). TERM, INT and HUP end a Go
// program by themselves.
var defaultDeaths = []os.Signal{unix.SIGILL, unix.SIGTRAP, unix.SIGABRT, unix.SIGBUS, unix.SIGFPE,
	unix.SIGSEGV, unix.SIGSYS, unix.SIGUSR1, unix.SIGUSR2, unix.SIGALRM, unix.SIGPROF, unix.SIGVTALRM,
	unix.SIGXCPU, unix.SIGXFSZ, unix.SIGSTKFLT, unix.SIGPWR}

func endsTheShell(sig unix.Signal) bool {
	for _, d := range defaultDeaths {
		if d == sig {
			return true
		}
	}
	return false
}

func newShellTraps() *shellTraps {
	t := &shellTraps{code: map[unix.Signal]string{}, caught: make(chan os.Signal, 16), deaths: make(chan os.Signal, 4), watching: make(chan struct{})}
	go func() {
		for s := range t.caught {
			t.mu.Lock()
			t.pending = append(t.pending, s.(unix.Signal))
			t.any.Store(true)
			t.mu.Unlock()
		}
	}()
	go func() {
		// Asked for in the background: each signal is a round trip with
		// the runtime's signal thread, and the command need not wait.
		signal.Notify(t.deaths, append(defaultDeaths, unix.SIGQUIT)...)
		close(t.watching)
		for s := range t.deaths {
			if sig := s.(unix.Signal); sig != unix.SIGQUIT && !t.trapped(sig) {
				dieOf(sig)
			}
		}
	}()
	return t
}

// awaitWatching returns once the shell dies of defaultDeaths. A program
// it starts may signal it at once (`sh -c 'kill -USR1 $PPID'`), and until
// then the Go runtime would drop USR1 and the like.
func (t *shellTraps) awaitWatching() { <-t.watching }

// take returns the commands of the signals caught since the last call, in
// the order they came, or "".
func (t *shellTraps) take() string {
	if !t.any.Load() {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var cmds []string
	for _, s := range t.pending {
		if c := t.code[s]; c != "" {
			cmds = append(cmds, c)
		}
	}
	t.pending = t.pending[:0]
	t.any.Store(false)
	return strings.Join(cmds, "\n")
}

// runPending runs the caught signals' commands after a program whose
// status is status, and returns what the program then returns: its own
// status, unless a trap command exits the shell. A program killed by a
// trapped signal most likely got it with the whole process group (a
// teardown), so the shell's own copy is waited for a moment: it travels
// through the Go runtime, and would otherwise be seen only after the
// program's end has been.
func (t *shellTraps) runPending(ctx context.Context, status error) error {
	if code, ok := interp.IsExitStatus(status); ok && code > 128 {
		t.awaitTrapped(unix.Signal(code-128), 50*time.Millisecond)
	}
	cmds := t.take()
	if cmds == "" {
		return status
	}
	code, _ := interp.IsExitStatus(status)
	// `(exit N)` last keeps the command's status unless the trap exits.
	err := interp.HandlerCtx(ctx).Builtin(ctx, []string{"eval", "{ " + cmds + "\n}; (exit " + strconv.Itoa(int(code)) + ")"})
	if err == nil {
		return nil
	}
	return err
}

// awaitTrapped waits up to d for sig to be caught, if it is trapped.
func (t *shellTraps) awaitTrapped(sig unix.Signal, d time.Duration) {
	t.mu.Lock()
	trapped := t.code[sig] != ""
	t.mu.Unlock()
	for deadline := time.Now().Add(d); trapped && !t.any.Load() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// raise is `kill -SIG $$` with SIG trapped: the trap's command runs at
// once, as bash's does after its kill builtin (a signal sent to ourselves
// arrives through the Go runtime, after the next commands may have run).
func (t *shellTraps) raise(ctx context.Context, sig unix.Signal) error {
	if !t.trapped(sig) {
		if sig == unix.SIGQUIT {
			return nil // bash ignores it
		}
		dieOf(sig) // at once, as bash's kill builtin kills bash
	}
	t.mu.Lock()
	if t.code[sig] != "" {
		t.pending = append(t.pending, sig)
		t.any.Store(true)
	}
	t.mu.Unlock()
	return t.runPending(ctx, nil)
}

// trapped reports whether sig has a trap, a command or "" (ignored).
func (t *shellTraps) trapped(sig unix.Signal) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.code[sig]
	return ok && sig != unix.SIGKILL && sig != unix.SIGSTOP
}

// pendingCall returns args with the caught signals' commands run first,
// for the call handler: nil when nothing was caught.
func (t *shellTraps) pendingCall(args []string) []string {
	cmds := t.take()
	if cmds == "" {
		return nil
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		q, err := syntax.Quote(a, syntax.LangBash)
		if err != nil {
			q = "''" // cannot happen: the shell made these strings
		}
		quoted[i] = q
	}
	return []string{"eval", "{ " + cmds + "\n}; " + strings.Join(quoted, " ")}
}

// signalSpec parses a signal as bash's trap takes it: a name with or
// without SIG, in any case, or a number; EXIT (0), ERR, DEBUG and RETURN
// are pseudo-signals, returned by name with sig 0.
func signalSpec(s string) (sig unix.Signal, pseudo string, ok bool) {
	up := strings.ToUpper(s)
	switch up {
	case "0", "EXIT", "SIGEXIT":
		return 0, "EXIT", true
	case "ERR", "DEBUG", "RETURN":
		return 0, up, true
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n > 0 && n < 65 {
			return unix.Signal(n), "", true
		}
		return 0, "", false
	}
	if sig := unix.SignalNum("SIG" + strings.TrimPrefix(up, "SIG")); sig != 0 {
		return sig, "", true
	}
	return 0, "", false
}

// trap is bash's trap builtin: `trap [-lp] [[ACTION] SIGNAL...]`.
func (t *shellTraps) trap(ctx context.Context, args []string) error {
	hc := interp.HandlerCtx(ctx)
	print := false
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-" {
		switch args[0] {
		case "-l":
			for n := 1; n < 32; n++ {
				fmt.Fprintf(hc.Stdout, "%2d) %s\n", n, unix.SignalName(unix.Signal(n)))
			}
			return nil
		case "-p":
			print = true
		case "--":
		default:
			fmt.Fprintf(hc.Stderr, "trap: %s: invalid option\ntrap: usage: trap [-lp] [[arg] signal_spec ...]\n", args[0])
			return interp.ExitStatus(2)
		}
		stop := args[0] == "--"
		args = args[1:]
		if stop {
			break
		}
	}
	if print || len(args) == 0 {
		return t.print(hc.Stdout, hc.Stderr, args)
	}
	action := args[0]
	specs := args[1:]
	if len(args) == 1 {
		action, specs = "-", args // `trap SIG` resets SIG
	} else if _, _, ok := signalSpec(action); ok && isUnsignedNumber(action) {
		// bash: a first argument that is a number is a signal to reset
		action, specs = "-", args
	}
	status := 0
	for _, spec := range specs {
		sig, pseudo, ok := signalSpec(spec)
		switch {
		case !ok:
			fmt.Fprintf(hc.Stderr, "trap: %s: invalid signal specification\n", spec)
			status = 1
		case pseudo == "EXIT" || pseudo == "ERR":
			if err := hc.Builtin(ctx, []string{"trap", action, pseudo}); err != nil {
				status = 1
				continue
			}
			t.mu.Lock()
			c := action
			if c == "-" {
				c = ""
			}
			if pseudo == "EXIT" {
				t.exitCode = c
			} else {
				t.errCode = c
			}
			t.mu.Unlock()
		case pseudo != "":
			fmt.Fprintf(hc.Stderr, "trap: %s: not supported by ipcflow's stage shell (install bash to run the stage with it)\n", pseudo)
			status = 1
		default:
			t.set(sig, action)
		}
	}
	return interp.ExitStatus(uint8(status))
}

func isUnsignedNumber(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

// set gives sig action: "-" the default, "" ignored (inherited by the
// programs the shell starts, as in bash), else a command.
func (t *shellTraps) set(sig unix.Signal, action string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if sig == unix.SIGKILL || sig == unix.SIGSTOP {
		// Neither can be caught or ignored; bash takes the trap and
		// nothing happens.
	} else if action == "-" {
		signal.Reset(sig)
		if endsTheShell(sig) || sig == unix.SIGQUIT {
			signal.Notify(t.deaths, sig) // Reset took it from deaths too
		}
	} else if action == "" {
		signal.Ignore(sig)
	} else {
		signal.Notify(t.caught, sig)
	}
	if action == "-" {
		delete(t.code, sig)
	} else {
		t.code[sig] = action
	}
}

// print lists the traps as bash does, `trap -- 'CMD' SIGNAME`, all of
// them or those of specs.
func (t *shellTraps) print(stdout, stderr io.Writer, specs []string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	line := func(code, name string) {
		q, _ := syntax.Quote(code, syntax.LangBash)
		if code == "" {
			q = "''"
		}
		fmt.Fprintf(stdout, "trap -- %s %s\n", q, name)
	}
	if len(specs) == 0 {
		if t.exitCode != "" {
			line(t.exitCode, "EXIT")
		}
		sigs := make([]unix.Signal, 0, len(t.code))
		for s := range t.code {
			sigs = append(sigs, s)
		}
		slices.Sort(sigs)
		for _, s := range sigs {
			line(t.code[s], unix.SignalName(s))
		}
		if t.errCode != "" {
			line(t.errCode, "ERR")
		}
		return nil
	}
	status := 0
	for _, spec := range specs {
		sig, pseudo, ok := signalSpec(spec)
		switch {
		case !ok:
			fmt.Fprintf(stderr, "trap: %s: invalid signal specification\n", spec)
			status = 1
		case pseudo == "EXIT" && t.exitCode != "":
			line(t.exitCode, "EXIT")
		case pseudo == "ERR" && t.errCode != "":
			line(t.errCode, "ERR")
		case pseudo == "":
			if c, ok := t.code[sig]; ok {
				line(c, unix.SignalName(sig))
			}
		}
	}
	return interp.ExitStatus(uint8(status))
}

// A resource ulimit knows: its flag, rlimit, the bytes of one unit it
// shows, and bash's label for `ulimit -a`.
type ulimitResource struct {
	flag  byte
	res   int
	scale uint64
	label string
	unit  string
}

// ulimitResources are bash's on Linux, in bash's order. -p (the pipe
// buffer) is fixed at 8 units of 512 bytes, as bash reports it.
var ulimitResources = []ulimitResource{
	{'R', unix.RLIMIT_RTTIME, 1, "real-time non-blocking time", "microseconds"},
	{'c', unix.RLIMIT_CORE, 1024, "core file size", "blocks"},
	{'d', unix.RLIMIT_DATA, 1024, "data seg size", "kbytes"},
	{'e', unix.RLIMIT_NICE, 1, "scheduling priority", ""},
	{'f', unix.RLIMIT_FSIZE, 1024, "file size", "blocks"},
	{'i', unix.RLIMIT_SIGPENDING, 1, "pending signals", ""},
	{'l', unix.RLIMIT_MEMLOCK, 1024, "max locked memory", "kbytes"},
	{'m', unix.RLIMIT_RSS, 1024, "max memory size", "kbytes"},
	{'n', unix.RLIMIT_NOFILE, 1, "open files", ""},
	{'p', -1, 512, "pipe size", "512 bytes"},
	{'q', unix.RLIMIT_MSGQUEUE, 1, "POSIX message queues", "bytes"},
	{'r', unix.RLIMIT_RTPRIO, 1, "real-time priority", ""},
	{'s', unix.RLIMIT_STACK, 1024, "stack size", "kbytes"},
	{'t', unix.RLIMIT_CPU, 1, "cpu time", "seconds"},
	{'u', unix.RLIMIT_NPROC, 1, "max user processes", ""},
	{'v', unix.RLIMIT_AS, 1024, "virtual memory", "kbytes"},
	{'x', unix.RLIMIT_LOCKS, 1, "file locks", ""},
}

// ulimit is bash's `ulimit [-SHa] [-Rcdefilmnpqrstuvx] [LIMIT]`. It sets
// the stage shell's own limits with setrlimit, which the programs it
// starts inherit; syscall.Setrlimit also tells Go's os/exec not to put
// back the open-file limit Go raised for itself at start.
func ulimit(ctx context.Context, args []string) error {
	hc := interp.HandlerCtx(ctx)
	fail := func(format string, a ...any) error {
		fmt.Fprintf(hc.Stderr, "ulimit: "+format+"\n", a...)
		return interp.ExitStatus(1)
	}
	soft, hard, all := false, false, false
	var res []ulimitResource
	var value string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			args = args[i+1:]
			i = -1
			if len(args) > 0 {
				value = args[0]
			}
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			value = a
			if i+1 < len(args) {
				return fail("too many arguments")
			}
			break
		}
		for _, c := range []byte(a[1:]) {
			switch c {
			case 'S':
				soft = true
			case 'H':
				hard = true
			case 'a':
				all = true
			default:
				k := slices.IndexFunc(ulimitResources, func(r ulimitResource) bool { return r.flag == c })
				if k < 0 {
					fmt.Fprintf(hc.Stderr, "ulimit: -%c: invalid option\nulimit: usage: ulimit [-SHabcdefiklmnpqrstuvxPRT] [limit]\n", c)
					return interp.ExitStatus(2)
				}
				res = append(res, ulimitResources[k])
			}
		}
	}
	if all {
		res = ulimitResources
		value = ""
	}
	if len(res) == 0 {
		res = []ulimitResource{ulimitResources[4]} // -f, as in bash
	}
	labelled := len(res) > 1
	for _, r := range res {
		if value == "" {
			if err := ulimitShow(hc.Stdout, r, hard && !soft, labelled); err != nil {
				return fail("%s: cannot get limit: %v", r.label, err)
			}
			continue
		}
		if r.res < 0 {
			return fail("%s: cannot modify limit: %v", r.label, unix.EINVAL)
		}
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(r.res, &lim); err != nil {
			return fail("%s: cannot get limit: %v", r.label, err)
		}
		var n uint64
		switch value {
		case "unlimited":
			n = unix.RLIM_INFINITY
		case "hard":
			n = lim.Max
		case "soft":
			n = lim.Cur
		default:
			v, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return fail("%s: invalid number", value)
			}
			n = v * r.scale
			if r.scale > 1 && n/r.scale != v {
				return fail("%s: limit out of range", value)
			}
		}
		// Neither -S nor -H sets both, as bash does.
		if soft || !hard {
			lim.Cur = n
		}
		if hard || !soft {
			lim.Max = n
		}
		if err := syscall.Setrlimit(r.res, &lim); err != nil {
			return fail("%s: cannot modify limit: %s", r.label, errText(err))
		}
	}
	return nil
}

// ulimitShow prints one resource's soft (or hard) limit in its units.
func ulimitShow(w io.Writer, r ulimitResource, hard, labelled bool) error {
	v := "8" // -p
	if r.res >= 0 {
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(r.res, &lim); err != nil {
			return err
		}
		n := lim.Cur
		if hard {
			n = lim.Max
		}
		v = "unlimited"
		if n != unix.RLIM_INFINITY {
			v = strconv.FormatUint(n/r.scale, 10)
		}
	}
	if !labelled {
		fmt.Fprintln(w, v)
		return nil
	}
	unit := "(-" + string(r.flag) + ")"
	if r.unit != "" {
		unit = "(" + r.unit + ", -" + string(r.flag) + ")"
	}
	// bash ends the units' parentheses at column 40, at least two spaces
	// after the label.
	pad := max(2, 40-len(r.label)-len(unit))
	fmt.Fprintf(w, "%s%*s%s %s\n", r.label, pad, "", unit, v)
	return nil
}

// errText is an errno's text as bash prints it: "Operation not permitted".
func errText(err error) string {
	s := err.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
