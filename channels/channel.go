// Package channels carries bytes between stage processes over one kind of
// kernel object per edge type: pipe.go, fifo.go, mq.go, shm.go, mmap.go,
// socket.go (with udp.go). Every type hides behind Channel, and every
// Channel hands plain file descriptors to the processes at its ends, so that
// ordinary Unix tools (which only read and write fds) work over any of them.
//
// A type whose object is itself an fd (pipe, fifo, unix socket) gives that fd
// to the stages and is done: no byte passes through ipcflow. A type whose
// object is not an fd (mq, shm ring, mmap file, tcp/udp) runs a bridge inside
// ipcflow (package bridge): the producer writes a pipe, the bridge moves the
// bytes into the object, a second bridge moves them out into the consumer's
// pipe. What the types share lives below them, each in a package of its
// own: the copy loops (fdio), the shm ring (ring), pipe and queue sizes
// (budget), queue system calls (mqueue), removal by identity (fileid).
//
// This package takes plain option values; it does not import parser or exec.
package channels

import (
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/ipcflow/ipcflow/fileid"
)

// Options are an edge's options as values; zero means "use the default".
// They mirror parser.Options field for field (exec converts).
type Options struct {
	Size    int64  // pipe/fifo buffer, shm ring capacity, mmap initial size: bytes
	Path    string // fifo, mmap: where the object lives (empty: the run directory)
	MaxMsg  int64  // mq, as the script set it (0: unset)
	MsgSize int64  // mq, as the script set it (0: unset)
	// PlanMaxMsg and PlanMsgSize are PlanMQ's sizes for a queue whose
	// script left MaxMsg or MsgSize unset: what fits the user's budget
	// beside the run's other queues. Open may shrink them further when
	// other runs of the user hold part of that budget.
	PlanMaxMsg, PlanMsgSize int64
	Socket                  string // socket: "unix" (default), "tcp" or "udp"
	Addr                    string // socket tcp/udp: host:port
}

// Env is what a channel needs from the run that owns it.
type Env struct {
	// RunDir is the run's private directory (mode 0700): files, FIFOs and
	// sockets without a path= go here.
	RunDir string
	// Prefix starts every named object of the run: "ipcflow.<runid>." with
	// <runid> random and unguessable. A channel names its objects
	// Prefix+Spec.ID (plus a suffix of its own if it needs several).
	Prefix string
	// Record adds an object to the run's manifest. A channel calls it
	// before it creates the object, so that `ipcflow clean` can find what a
	// crash left. kind is one of the Kind* constants; name is a path
	// (files, FIFOs, sockets, shm under /dev/shm) or a POSIX mq name.
	Record func(kind, name string) error
	// Made records the identity of an object Record listed, once it
	// exists, so that it is removed only while it is still that object
	// (package fileid). It may be nil.
	Made func(name string, id fileid.Identity) error
}

// made tells env the identity of what fd has open at name.
func (env Env) made(name string, fd int) error {
	if env.Made == nil {
		return nil
	}
	id, err := fileid.FdIdentity(fd)
	if err == nil {
		err = env.Made(name, id)
	}
	return err
}

// Kinds of object recorded in a run's manifest.
const (
	KindFile = "file" // a regular file, FIFO or unix socket path: unlink(2)
	KindShm  = "shm"  // a POSIX shm object, as a path under /dev/shm
	KindMQ   = "mq"   // a POSIX message queue name, "/ipcflow...."
	KindSem  = "sem"  // a POSIX named semaphore name, "/ipcflow...."
	KindDir  = "dir"  // a directory to remove when empty
)

// Spec says which channel to create.
type Spec struct {
	ID      string // the edge's id within the run ("e3"): names derive from it
	Type    string // "pipe", "fifo", "mq", "shm", "mmap", "socket"
	Options Options
	// Readers is how many consumers read the whole stream. It is 1 unless
	// the type's Caps().FanOut is true and exec groups a fan-out into one
	// channel (shm keeps the data once with a cursor per reader).
	Readers int
	// NativeWriter and NativeReaders[i] say which ends a native stage
	// holds itself (native.go): the channel then is a NativeEnds, runs no
	// bridge for those ends, and Writer or Reader(i) is nil for them.
	// Only types with Caps.Native take them.
	NativeWriter  bool
	NativeReaders []bool
}

// Stats are what a channel counted, for --stats.
type Stats struct {
	Bytes   int64 // bytes delivered into the object by the producer side
	Records int64 // messages, datagrams or ring commits, as the type counts them
	Lost    int64 // udp: datagrams known lost
}

// Channel is one edge's kernel object(s), created in ipcflow before any
// stage starts, with plain fds for the processes at its ends.
//
// The life of a Channel, as exec drives it:
//
//	ch, err := Open(env, spec)   // creates objects (recorded first), pipes, bridges
//	w := ch.Writer()             // exec dup2s w into the producer, then closes w
//	r := ch.Reader(i)            // exec dup2s r into consumer i, then closes r
//	...stages run; bridges (if any) run in goroutines of ipcflow...
//	err = ch.Wait()              // bridges done: the producer closed and all was delivered,
//	                             // or every reader went away
//	ch.Close()                   // always, in every outcome: removes the objects
//
// Writer and Reader hand over ownership: exec closes them after the stage
// processes have been started (or when they can't be), and closing them is
// what lets end of file and EPIPE propagate. If exec never calls Writer or
// Reader(i) (a stage was skipped), Close closes them.
type Channel interface {
	// Writer is the producer's end: a plain fd any process can write.
	Writer() *os.File
	// Reader is consumer i's end (0 <= i < Spec.Readers): a plain fd.
	Reader(i int) *os.File
	// Wait blocks until the channel's bridges have finished: everything
	// the producer wrote was delivered to every reader still reading, or
	// every reader has gone (the producer then sees EPIPE). A channel with
	// no bridge returns nil at once. A bridge error (an object vanished,
	// I/O failed) is returned here, naming the edge.
	Wait() error
	// Close stops any bridge, closes every fd the channel still holds and
	// removes its kernel objects. Safe to call more than once and in any
	// state. Named objects are unlinked as soon as every end is open (in
	// Open, where the type allows it), so Close mostly closes fds.
	Close() error
	// Stats reports what the channel counted so far.
	Stats() Stats
}

// Filler is a Channel that can tell how much its object holds now and
// how much it can hold, for --stats (a ring, a queue). Asked only while
// the channel is open.
type Filler interface {
	Fill() (used, capacity int64)
}

// Recording is a Channel whose object outlives the run on purpose (an mmap
// edge's path= file, SPEC 4). DiscardRecording removes it after all, for
// a run that failed before it started: the file is empty, and left there
// it would make the next run fail ("already exists").
type Recording interface {
	Channel
	DiscardRecording() error
}

// Caps are what a type can do, so exec can plan around it.
type Caps struct {
	// FanOut: one channel can serve several readers (Spec.Readers > 1),
	// each reading the whole stream. Otherwise exec fans out with a Tee.
	FanOut bool
	// Bridged: bytes pass through ipcflow (a bridge goroutine) rather than
	// only through the kernel between the stages.
	Bridged bool
	// Native: a native stage can hold an end itself (Spec.NativeWriter,
	// Spec.NativeReaders): mq, shm, mmap.
	Native bool
}

// Type is one edge type: its capabilities and how to open one.
type Type struct {
	Name string
	Caps Caps
	// Check validates options against this machine's limits before
	// anything is created (size above pipe-max-size, mq above its sysctl,
	// an address that does not parse), so that a flow that can't run fails
	// before it starts. It may be nil.
	Check func(Options) error
	Open  func(Env, Spec) (Channel, error)
	// NotPipes says which of the ends a channel of these options hands
	// to the stages is not an anonymous pipe (a named FIFO, a socket).
	// Nil: both are pipes. It matters for a declared port, whose command
	// opens /dev/fd/N like a file: Linux opens an anonymous pipe's
	// /dev/fd/N at once (bash's <( ) relies on it), a named FIFO's waits
	// for a partner that may have gone already, and a socket's fails
	// (ENXIO). exec puts a pipe of its own in front of such an end.
	NotPipes func(Options) (writer, reader bool)
}

// OpensAsFile reports whether the writer (reader) end of a channel of
// type name with options o is an anonymous pipe, whose /dev/fd/N path a
// command can open as a file whenever it likes.
func OpensAsFile(name string, o Options) (writer, reader bool) {
	t, ok := types[name]
	if !ok || t.NotPipes == nil {
		return true, true
	}
	w, r := t.NotPipes(o)
	return !w, !r
}

var types = map[string]Type{}

// register adds an edge type; each type's file calls it from init.
func register(t Type) {
	if _, dup := types[t.Name]; dup {
		panic("channels: type registered twice: " + t.Name)
	}
	types[t.Name] = t
}

// Lookup returns the edge type called name.
func Lookup(name string) (Type, bool) {
	t, ok := types[name]
	return t, ok
}

// Names lists the registered edge types, sorted.
func Names() []string {
	names := make([]string, 0, len(types))
	for n := range types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Open creates the channel spec asks for.
func Open(env Env, spec Spec) (Channel, error) {
	t, ok := types[spec.Type]
	if !ok {
		return nil, fmt.Errorf("edge %s: unknown type %q", spec.ID, spec.Type)
	}
	if spec.Readers < 1 {
		spec.Readers = 1
	}
	if spec.Readers > 1 && !t.Caps.FanOut {
		return nil, fmt.Errorf("edge %s: type %s has one reader per channel, not %d", spec.ID, spec.Type, spec.Readers)
	}
	if t.Check != nil {
		if err := t.Check(spec.Options); err != nil {
			return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
		}
	}
	if spec.HasNative() && !t.Caps.Native {
		return nil, fmt.Errorf("edge %s: type %s has no native ends", spec.ID, spec.Type)
	}
	return t.Open(env, spec)
}

// ends holds the fds a channel hands to the stages, and closes those that
// were never handed over.
type ends struct {
	mu      sync.Mutex
	w       *os.File
	r       []*os.File
	handedW bool
	handedR []bool
}

func newEnds(w *os.File, r []*os.File) ends {
	return ends{w: w, r: r, handedR: make([]bool, len(r))}
}

func (e *ends) Writer() *os.File {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.handedW = true
	return e.w
}

func (e *ends) Reader(i int) *os.File {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i < 0 || i >= len(e.r) {
		return nil
	}
	e.handedR[i] = true
	return e.r[i]
}

// closeUnhanded closes the ends exec never took; those it took are exec's
// to close (closing them here could close an fd number reused since).
func (e *ends) closeUnhanded() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.handedW && e.w != nil {
		e.w.Close()
		e.handedW = true
	}
	for i, f := range e.r {
		if !e.handedR[i] && f != nil {
			f.Close()
			e.handedR[i] = true
		}
	}
}

// Counted reports whether a channel of spec counts the bytes it carries
// (they pass a bridge of ipcflow's), so that its Stats are the edge's:
// pipe, fifo and tcp edges join the stages through the kernel alone.
func Counted(spec Spec) bool {
	t, ok := types[spec.Type]
	return ok && t.Caps.Bridged && !(spec.Type == "socket" && spec.Options.Socket == "tcp")
}

// HasRecords reports whether the type of spec moves records that Stats
// counts: mq messages, shm ring commits, udp datagrams.
func HasRecords(spec Spec) bool {
	return spec.Type == "mq" || spec.Type == "shm" || (spec.Type == "socket" && spec.Options.Socket == "udp")
}
