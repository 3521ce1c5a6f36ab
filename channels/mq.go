package channels

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The mq edge type: a POSIX message queue, through raw system calls (no
// cgo, no librt). The producer writes a pipe; a bridge packs whole lines
// into messages of up to msgsize bytes; a second bridge unpacks them into
// the consumer's pipe.
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
// lines, and holds the queue's send lock from the first message of a long
// line to its last, so lines never interleave mid-line. The last producer
// to finish sends mqEOF.

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
	case l.Budget >= 0 && MQCost(maxmsg, msgsize) > l.Budget:
		return fmt.Errorf("mq queue of %d x %d bytes needs %d bytes, above RLIMIT_MSGQUEUE (%d; raise it with ulimit -q)", maxmsg, msgsize, MQCost(maxmsg, msgsize), l.Budget)
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

// mqCall runs one mq_timedsend or mq_timedreceive on a non-blocking queue
// descriptor through Go's poller: it waits (without a thread) while the
// queue is full or empty, and a Close of the file wakes it. The closure is
// made once per bridge: no allocation per message.
type mqCall struct {
	rc    syscall.RawConn
	trap  uintptr
	p     unsafe.Pointer
	n     int
	ret   int
	errno unix.Errno
	fn    func(fd uintptr) bool
	once  func(fd uintptr) // fn without waiting
}

func newMQCall(f *os.File, trap uintptr) (*mqCall, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	c := &mqCall{rc: rc, trap: trap}
	c.fn = func(fd uintptr) bool {
		for {
			r, _, e := unix.Syscall6(c.trap, fd, uintptr(c.p), uintptr(c.n), 0, 0, 0)
			if e == unix.EINTR {
				continue
			}
			c.ret, c.errno = int(r), e
			return e != unix.EAGAIN
		}
	}
	c.once = func(fd uintptr) { c.fn(fd) }
	return c, nil
}

// do runs the call on b; wait says whether to wait while it would block
// (otherwise EAGAIN comes back).
func (c *mqCall) do(b []byte, wait bool) (int, error) {
	c.p, c.n = unsafe.Pointer(&b[0]), len(b)
	var err error
	switch {
	case !wait:
		err = c.rc.Control(c.once)
	case c.trap == unix.SYS_MQ_TIMEDRECEIVE:
		err = c.rc.Read(c.fn)
	default:
		err = c.rc.Write(c.fn)
	}
	c.p = nil
	if err != nil {
		return 0, err
	}
	if c.errno != 0 {
		return 0, c.errno
	}
	return c.ret, nil
}

type mqChannel struct {
	ends
	br        bridges
	name      string
	msgsize   int
	send      *os.File // the queue, write side (non-blocking)
	recv      *os.File // the queue, read side (non-blocking)
	out       *os.File // ipcflow's end of the consumer's pipe
	mu        sync.Mutex
	ins       []*os.File // ipcflow's ends of the producers' pipes
	sendMu    sync.Mutex // held across the messages of one long line
	producers atomic.Int32
	gone      atomic.Bool
	bytes     atomic.Int64
	msgs      atomic.Int64
	once      sync.Once
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
	uerr := UnlinkMQ(name)
	c := &mqChannel{
		name:    name,
		msgsize: int(msgsize),
		send:    os.NewFile(uintptr(sfd), name),
		recv:    os.NewFile(uintptr(rfd), name),
		br:      bridges{edge: spec.ID},
	}
	if uerr != nil {
		c.Close()
		return nil, fmt.Errorf("edge %s: unlink mq %s: %w", spec.ID, name, uerr)
	}
	if a, err := mqGetAttr(rfd); err != nil || a.Msgsize != msgsize {
		c.Close()
		return nil, fmt.Errorf("edge %s: mq %s has message size %d, want %d (%v)", spec.ID, name, a.Msgsize, msgsize, err)
	}
	r, out, err := bridgePipe(false)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	c.out = out
	w, err := c.addProducer()
	if err != nil {
		r.Close()
		c.Close()
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	c.ends = newEnds(w, []*os.File{r})
	c.br.goRun(c.consume)
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

// AddWriter gives the queue another producer: a new pipe whose lines go
// into the same queue, never interleaved mid-line with the others'. Call it
// before the stages start; end of stream follows the last producer's.
func (c *mqChannel) AddWriter() (*os.File, error) {
	if c.producers.Load() == 0 {
		return nil, fmt.Errorf("edge %s: add a producer to a finished queue", c.br.edge)
	}
	return c.addProducer()
}

func (c *mqChannel) addProducer() (*os.File, error) {
	w, in, err := bridgePipe(true)
	if err != nil {
		return nil, err
	}
	sender, err := newMQCall(c.send, unix.SYS_MQ_TIMEDSEND)
	if err != nil {
		w.Close()
		in.Close()
		return nil, err
	}
	c.mu.Lock()
	c.ins = append(c.ins, in)
	c.mu.Unlock()
	c.producers.Add(1)
	c.br.goRun(func() error { return c.produce(in, sender) })
	return w, nil
}

// produce packs one producer's pipe into messages: as many whole lines as
// fit in msgsize-1 bytes; a longer line in msgsize-1 pieces.
func (c *mqChannel) produce(in *os.File, s *mqCall) (err error) {
	P := c.msgsize - 1
	buf := make([]byte, max(1<<20, 4*P)+1) // +1: room for the trailer after the last payload
	have := 0
	midLine := false
	defer func() {
		in.Close() // the reader gone, or the end: the producer sees EPIPE from now on
		if midLine {
			c.sendMu.Unlock()
		}
		// The last producer ends the stream, also after a failure, so
		// that the consumer is not left waiting.
		if c.producers.Add(-1) == 0 && !c.gone.Load() {
			buf[0] = mqEOF
			c.sendMu.Lock()
			_, serr := s.do(buf[:1], true)
			c.sendMu.Unlock()
			if serr != nil && err == nil && !c.gone.Load() {
				err = fmt.Errorf("send end of stream: %w", serr)
			}
		}
	}()
	// sendMsg sends buf[a:b] with the trailer flag, in place.
	sendMsg := func(a, b int, flag byte) error {
		if !midLine {
			c.sendMu.Lock()
		}
		saved := buf[b]
		buf[b] = flag
		_, err := s.do(buf[a:b+1], true)
		buf[b] = saved
		midLine = flag == mqContinues
		if !midLine {
			c.sendMu.Unlock()
		}
		if err != nil {
			return err
		}
		c.bytes.Add(int64(b - a))
		c.msgs.Add(1)
		return nil
	}
	for {
		n, rerr := in.Read(buf[have : len(buf)-1])
		have += n
		eof := rerr == io.EOF
		if rerr != nil && !eof {
			return fmt.Errorf("read from producer: %w", rerr)
		}
		s0 := 0
		for s0 < have {
			win := min(have-s0, P)
			k := bytes.LastIndexByte(buf[s0:s0+win], '\n')
			switch {
			case k >= 0:
				err = sendMsg(s0, s0+k+1, mqEnds)
				s0 += k + 1
			case win == P:
				err = sendMsg(s0, s0+P, mqContinues)
				s0 += P
			case eof:
				err = sendMsg(s0, have, mqEnds)
				s0 = have
			default:
				goto refill // a partial line: wait for the rest
			}
			if err != nil {
				if c.gone.Load() {
					return nil
				}
				return fmt.Errorf("send to mq %s: %w", c.name, err)
			}
		}
	refill:
		have = copy(buf, buf[s0:have])
		if eof {
			return nil
		}
	}
}

// consume takes messages off the queue into the consumer's pipe: it waits
// for one, then takes what else is there (up to its buffer) without
// waiting, each message at the end of the previous payload, and writes the
// batch with one write(2).
func (c *mqChannel) consume() error {
	defer c.out.Close()
	r, err := newMQCall(c.recv, unix.SYS_MQ_TIMEDRECEIVE)
	if err != nil {
		return err
	}
	buf := make([]byte, max(1<<20, 4*c.msgsize))
	for {
		off, eof := 0, false
		for off+c.msgsize <= len(buf) {
			n, err := r.do(buf[off:], off == 0)
			if errors.Is(err, unix.EAGAIN) {
				break
			}
			if err != nil {
				return fmt.Errorf("receive from mq %s: %w", c.name, err)
			}
			if n == 0 {
				return fmt.Errorf("receive from mq %s: empty message", c.name)
			}
			if buf[off+n-1] == mqEOF {
				eof = true
				break
			}
			off += n - 1
		}
		if off > 0 {
			if _, err := c.out.Write(buf[:off]); err != nil {
				if isGone(err) {
					// The consumer stopped: wake and stop the producers, whose
					// next write then gets EPIPE.
					c.gone.Store(true)
					c.send.Close()
					c.recv.Close()
					return nil
				}
				return fmt.Errorf("write to reader: %w", err)
			}
		}
		if eof {
			return nil
		}
	}
}

func (c *mqChannel) Wait() error { return c.br.wait() }

func (c *mqChannel) Close() error {
	c.once.Do(func() {
		c.br.closing.Store(true)
		c.gone.Store(true)
		c.send.Close()
		c.recv.Close()
		if c.out != nil {
			c.out.Close()
		}
		c.mu.Lock()
		for _, f := range c.ins {
			f.Close()
		}
		c.mu.Unlock()
		c.br.wg.Wait()
		c.closeUnhanded()
	})
	return nil
}

func (c *mqChannel) Stats() Stats {
	return Stats{Bytes: c.bytes.Load(), Records: c.msgs.Load()}
}
