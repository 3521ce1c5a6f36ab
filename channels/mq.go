package channels

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The mq edge type: a POSIX message queue, through raw system calls (no
// cgo, no librt). The producer writes a pipe; the bridge packs whole lines
// into messages of up to msgsize bytes, and unpacks them at the other end
// of the queue into the consumer's pipe.
//
// Message format: the payload, then one trailer byte:
//
//	mqEnds       the payload ends on a line boundary (or is the stream's
//	             last bytes, which need not end in a newline)
//	mqContinues  the payload's last line goes on in the next message of the
//	             same producer: a line longer than msgsize-1 spans messages
//	mqEOF        (the message is this byte alone) end of stream
//
// A trailer rather than a header lets both bridges work in place: the
// sender writes the flag over the byte after the payload (and puts it back
// after the send), the receiver takes each message at the end of the
// previous payload, so a batch of messages lands as one contiguous run of
// stream bytes, written to the consumer with one write(2).
//
// Several producers may share a queue (AddWriter): each sends only whole
// lines, and once a producer has sent the first piece of a long line, the
// others wait until its last piece is sent, so lines never interleave
// mid-line. When every producer has finished, the bridge sends mqEOF.
//
// The bridge, one loop over both ends of the queue, is in mqbridge.go.

const (
	mqEnds      = 0
	mqContinues = 1
	mqEOF       = 2

	// mqPrioMax is the kernel's MQ_PRIO_MAX; the size of struct msg_msg and
	// struct posix_msg_tree_node on 64-bit Linux (ipc/mqueue.c,
	// mqueue_get_inode): what each queue costs against RLIMIT_MSGQUEUE.
	mqPrioMax      = 32768
	mqMsgMsgSize   = 48
	mqTreeNodeSize = 48
)

func init() {
	register(Type{Name: "mq", Caps: Caps{Bridged: true}, Check: checkMQ, Open: openMQ})
}

// mqAttr is struct mq_attr.
type mqAttr struct {
	Flags, Maxmsg, Msgsize, Curmsgs int64
	_                               [4]int64
}

// mqName turns "/name" into what the system call takes: glibc strips the
// slash before calling mq_open.
func mqName(name string) (*byte, error) {
	return unix.BytePtrFromString(strings.TrimPrefix(name, "/"))
}

// mqOpen is mq_open(3). With O_CREAT the queue gets maxmsg and msgsize.
func mqOpen(name string, flags int, maxmsg, msgsize int64) (int, error) {
	p, err := mqName(name)
	if err != nil {
		return -1, err
	}
	var attr *mqAttr
	if flags&unix.O_CREAT != 0 {
		attr = &mqAttr{Maxmsg: maxmsg, Msgsize: msgsize}
	}
	fd, _, e := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(p)), uintptr(flags|unix.O_CLOEXEC), 0o600, uintptr(unsafe.Pointer(attr)), 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

// UnlinkMQ is mq_unlink(3): it removes the queue called name ("/NAME").
// Exported for the run's teardown and `ipcflow clean`.
func UnlinkMQ(name string) error {
	p, err := mqName(name)
	if err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_MQ_UNLINK, uintptr(unsafe.Pointer(p)), 0, 0); e != 0 {
		return e
	}
	return nil
}

// MQExists reports whether a queue called name exists, by opening it:
// /dev/mqueue, where queues could be listed, is often not mounted.
func MQExists(name string) bool {
	fd, err := mqOpen(name, unix.O_RDONLY, 0, 0)
	if err != nil {
		return err != unix.ENOENT
	}
	unix.Close(fd)
	return true
}

// mqGetAttr is mq_getattr(3), through mq_getsetattr.
func mqGetAttr(fd int) (mqAttr, error) {
	var a mqAttr
	if _, _, e := unix.Syscall(unix.SYS_MQ_GETSETATTR, uintptr(fd), 0, uintptr(unsafe.Pointer(&a))); e != 0 {
		return a, e
	}
	return a, nil
}

// MQLimits are the system's message-queue settings (/proc/sys/fs/mqueue)
// and the per-user budget.
type MQLimits struct {
	MsgDefault, MsgMax         int64
	MsgsizeDefault, MsgsizeMax int64
	Budget                     int64 // RLIMIT_MSGQUEUE (soft); -1: unlimited
}

// ReadMQLimits reads this machine's limits.
func ReadMQLimits() MQLimits {
	l := MQLimits{
		MsgDefault:     readProcInt("/proc/sys/fs/mqueue/msg_default", 10),
		MsgMax:         readProcInt("/proc/sys/fs/mqueue/msg_max", 10),
		MsgsizeDefault: readProcInt("/proc/sys/fs/mqueue/msgsize_default", 8192),
		MsgsizeMax:     readProcInt("/proc/sys/fs/mqueue/msgsize_max", 8192),
		Budget:         -1,
	}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MSGQUEUE, &rl) == nil && rl.Cur != unix.RLIM_INFINITY {
		l.Budget = int64(rl.Cur)
	}
	return l
}

// MQCost is what a queue of maxmsg messages of msgsize bytes takes from
// RLIMIT_MSGQUEUE, as mqueue_get_inode counts it.
func MQCost(maxmsg, msgsize int64) int64 {
	return maxmsg*(msgsize+mqMsgMsgSize) + min(maxmsg, mqPrioMax)*mqTreeNodeSize
}

// resolve gives an edge's queue sizes: the script's, else PlanMQ's, else
// the system defaults.
func (l MQLimits) resolve(o Options) (maxmsg, msgsize int64) {
	maxmsg, msgsize = o.MaxMsg, o.MsgSize
	if maxmsg == 0 {
		maxmsg = cmp.Or(o.PlanMaxMsg, l.MsgDefault)
	}
	if msgsize == 0 {
		msgsize = cmp.Or(o.PlanMsgSize, l.MsgsizeDefault)
	}
	return maxmsg, msgsize
}

func checkMQ(o Options) error {
	l := ReadMQLimits()
	maxmsg, msgsize := l.resolve(o)
	switch {
	case maxmsg < 1:
		return fmt.Errorf("mq maxmsg %d: must be at least 1", maxmsg)
	case msgsize < 2:
		return fmt.Errorf("mq msgsize %d: must be at least 2 (each message has one byte of framing)", msgsize)
	case maxmsg > l.MsgMax:
		return fmt.Errorf("mq maxmsg %d is above the system limit %d (raise it with: sysctl fs.mqueue.msg_max=%d)", maxmsg, l.MsgMax, maxmsg)
	case msgsize > l.MsgsizeMax:
		return fmt.Errorf("mq msgsize %d is above the system limit %d (raise it with: sysctl fs.mqueue.msgsize_max=%d)", msgsize, l.MsgsizeMax, msgsize)
	}
	// Sizes the script left unset shrink to fit (PlanMQ, openMQ): only
	// the smallest queue the script allows must fit the budget.
	minMsgs, minSize := maxmsg, msgsize
	if o.MaxMsg == 0 {
		minMsgs = 1
	}
	if o.MsgSize == 0 {
		minSize = min(512, msgsize)
	}
	if l.Budget >= 0 && MQCost(minMsgs, minSize) > l.Budget {
		return fmt.Errorf("mq queue of %d x %d bytes needs %d bytes, above RLIMIT_MSGQUEUE (%d; raise it with ulimit -q)", minMsgs, minSize, MQCost(minMsgs, minSize), l.Budget)
	}
	return nil
}

// Free measures how much of RLIMIT_MSGQUEUE this user has left (-1:
// unlimited). The kernel does not say how much the user's other queues
// take, so it asks: it creates queues (each unlinked at once, all closed
// at the end) until the kernel refuses, the largest first, then finds the
// rest by halving the message size of a one-message queue. A few dozen
// system calls; run only for flows with mq edges.
func (l MQLimits) Free() int64 {
	if l.Budget < 0 {
		return -1
	}
	var id [8]byte
	rand.Read(id[:])
	prefix := "/ipcflow." + hex.EncodeToString(id[:]) + ".probe" // a stray to `ipcflow clean`, should one ever stay
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	try := func(maxmsg, msgsize int64) bool {
		name := prefix + strconv.Itoa(len(fds))
		fd, err := mqOpen(name, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL, maxmsg, msgsize)
		if err != nil {
			return false
		}
		UnlinkMQ(name)
		fds = append(fds, fd)
		return true
	}
	var free int64
	for mm := l.MsgMax; mm >= 1; mm-- {
		for free+MQCost(mm, l.MsgsizeMax) <= l.Budget && try(mm, l.MsgsizeMax) {
			free += MQCost(mm, l.MsgsizeMax)
		}
	}
	for step := l.MsgsizeMax / 2; step >= 1; step /= 2 {
		for free+MQCost(1, step) <= l.Budget && try(1, step) {
			free += MQCost(1, step)
		}
	}
	return free
}

// PlanMQ sizes the n mq edges of one run (opts[i] are their options, as
// written) so that together they fit the per-user budget RLIMIT_MSGQUEUE.
// Options the script set are kept; the others (PlanMaxMsg, PlanMsgSize)
// start at the system defaults and shrink, all edges alike, first in depth (maxmsg, down to 2), then in
// message size (down to 512 bytes), then to one message. A flow that cannot
// fit fails here, before anything starts, naming the limit.
func PlanMQ(n int, opts []Options) ([]Options, error) {
	if n != len(opts) {
		return nil, fmt.Errorf("plan mq: %d edges but %d option sets", n, len(opts))
	}
	l := ReadMQLimits()
	out := make([]Options, n)
	for i, o := range opts {
		if err := checkMQ(o); err != nil {
			return nil, err
		}
		out[i] = o
	}
	if l.Budget < 0 {
		return out, nil
	}
	levels := [][2]int64{}
	for mm := l.MsgDefault; mm >= 2; mm-- {
		levels = append(levels, [2]int64{mm, l.MsgsizeDefault})
	}
	for ms := l.MsgsizeDefault / 2; ms >= 512; ms /= 2 {
		levels = append(levels, [2]int64{2, ms})
	}
	levels = append(levels, [2]int64{1, min(512, l.MsgsizeDefault)})
	// What the user's other queues (other runs, other programs) leave.
	free := l.Free()
	var total int64
	for _, lv := range levels {
		total = 0
		for i := range out {
			out[i].PlanMaxMsg, out[i].PlanMsgSize = lv[0], lv[1]
			total += MQCost(l.resolve(out[i]))
		}
		if total <= free {
			return out, nil
		}
	}
	if free < l.Budget {
		return nil, fmt.Errorf("%d mq edges need at least %d bytes of queue memory, and only %d of RLIMIT_MSGQUEUE (%d bytes) are free: other queues of this user hold the rest (raise it with ulimit -q, or use fewer or smaller queues)", n, total, free, l.Budget)
	}
	return nil, fmt.Errorf("%d mq edges need at least %d bytes of queue memory, above RLIMIT_MSGQUEUE (%d bytes; raise it with ulimit -q, or use fewer or smaller queues)", n, total, l.Budget)
}

func openMQ(env Env, spec Spec) (Channel, error) {
	l := ReadMQLimits()
	maxmsg, msgsize := l.resolve(spec.Options)
	name := "/" + env.Prefix + spec.ID
	if err := env.Record(KindMQ, name); err != nil {
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	sfd, err := mqOpen(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NONBLOCK, maxmsg, msgsize)
	// Out of budget (a run that did not PlanMQ, or other queues of the
	// user): sizes the script left unset shrink until the queue fits.
	for errors.Is(err, unix.EMFILE) {
		switch {
		case spec.Options.MaxMsg == 0 && maxmsg > 1:
			maxmsg--
		case spec.Options.MsgSize == 0 && msgsize > 512:
			msgsize /= 2
		default:
			return nil, fmt.Errorf("edge %s: %w", spec.ID, mqOpenError(name, maxmsg, msgsize, l, err))
		}
		sfd, err = mqOpen(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NONBLOCK, maxmsg, msgsize)
	}
	if err != nil {
		return nil, fmt.Errorf("edge %s: %w", spec.ID, mqOpenError(name, maxmsg, msgsize, l, err))
	}
	rfd, err := mqOpen(name, unix.O_RDONLY|unix.O_NONBLOCK, 0, 0)
	if err != nil {
		unix.Close(sfd)
		UnlinkMQ(name)
		return nil, fmt.Errorf("edge %s: open mq %s for reading: %w", spec.ID, name, err)
	}
	// Both ends are open, in this process: the name can go.
	if err := UnlinkMQ(name); err != nil {
		unix.Close(sfd)
		unix.Close(rfd)
		return nil, fmt.Errorf("edge %s: unlink mq %s: %w", spec.ID, name, err)
	}
	if a, err := mqGetAttr(rfd); err != nil || a.Msgsize != msgsize {
		unix.Close(sfd)
		unix.Close(rfd)
		return nil, fmt.Errorf("edge %s: mq %s has message size %d, want %d (%v)", spec.ID, name, a.Msgsize, msgsize, err)
	}
	c, err := newMQBridge(spec.ID, name, sfd, rfd, int(msgsize))
	if err != nil {
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	return c, nil
}

// mqOpenError explains a failed mq_open in terms of the limit that was hit.
func mqOpenError(name string, maxmsg, msgsize int64, l MQLimits, err error) error {
	switch {
	case errors.Is(err, unix.EMFILE) && l.Budget >= 0:
		return fmt.Errorf("create mq %s (%d x %d bytes, %d of queue memory): the user's RLIMIT_MSGQUEUE (%d bytes) is used up (other queues of this user count too; raise it with ulimit -q): %w",
			name, maxmsg, msgsize, MQCost(maxmsg, msgsize), l.Budget, err)
	case errors.Is(err, unix.ENOSPC):
		return fmt.Errorf("create mq %s: the system's queue count limit is reached (/proc/sys/fs/mqueue/queues_max): %w", name, err)
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("create mq %s: a queue of that name already exists: %w", name, err)
	}
	return fmt.Errorf("create mq %s (%d x %d bytes): %w", name, maxmsg, msgsize, err)
}
