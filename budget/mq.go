package budget

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/mqueue"
)

// The per-user budget of POSIX message queues, RLIMIT_MSGQUEUE: what each
// queue costs against it (as ipc/mqueue.c counts), how much of it is left,
// and how a run's queues share it.

const (
	// mqPrioMax is the kernel's MQ_PRIO_MAX; the size of struct msg_msg and
	// struct posix_msg_tree_node on 64-bit Linux (ipc/mqueue.c,
	// mqueue_get_inode): what each queue costs against RLIMIT_MSGQUEUE.
	mqPrioMax      = 32768
	mqMsgMsgSize   = 48
	mqTreeNodeSize = 48
)

// Queue is one mq edge's sizes: MaxMsg and MsgSize as the script set them
// (0: unset), PlanMaxMsg and PlanMsgSize as PlanMQ chose them for the ones
// left unset (0: not planned, the system default).
type Queue struct {
	MaxMsg, MsgSize         int64
	PlanMaxMsg, PlanMsgSize int64
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

// Resolve gives an edge's queue sizes: the script's, else PlanMQ's, else
// the system defaults.
func (l MQLimits) Resolve(o Queue) (maxmsg, msgsize int64) {
	maxmsg, msgsize = o.MaxMsg, o.MsgSize
	if maxmsg == 0 {
		maxmsg = cmp.Or(o.PlanMaxMsg, l.MsgDefault)
	}
	if msgsize == 0 {
		msgsize = cmp.Or(o.PlanMsgSize, l.MsgsizeDefault)
	}
	return maxmsg, msgsize
}

// CheckMQ validates a queue's sizes against this machine's limits and
// the user's budget, naming the limit a size is above.
func CheckMQ(o Queue) error {
	l := ReadMQLimits()
	maxmsg, msgsize := l.Resolve(o)
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
		fd, err := mqueue.Open(name, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL, maxmsg, msgsize)
		if err != nil {
			return false
		}
		mqueue.Unlink(name)
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

// PlanMQ sizes the mq edges of one run (opts[i] are their sizes, as
// written) so that together they fit the per-user budget RLIMIT_MSGQUEUE.
// Options the script set are kept; the others (PlanMaxMsg, PlanMsgSize)
// start at the system defaults and shrink, all edges alike, first in depth (maxmsg, down to 2), then in
// message size (down to 512 bytes), then to one message. A flow that cannot
// fit fails here, before anything starts, naming the limit.
func PlanMQ(opts []Queue) ([]Queue, error) {
	n := len(opts)
	l := ReadMQLimits()
	out := make([]Queue, n)
	for i, o := range opts {
		if err := CheckMQ(o); err != nil {
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
			total += MQCost(l.Resolve(out[i]))
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
