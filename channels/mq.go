package channels

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/bridge"
	"github.com/ipcflow/ipcflow/budget"
	"github.com/ipcflow/ipcflow/mqueue"
	"github.com/ipcflow/ipcflow/native"
)

// The mq edge type: a POSIX message queue (package mqueue). The producer
// writes a pipe; the bridge (bridge.MQ) packs whole lines into messages of
// up to msgsize bytes, and unpacks them at the other end of the queue into
// the consumer's pipe. The queue's sizes are the script's, else what
// budget.PlanMQ chose, else the system defaults, shrunk to fit the user's
// RLIMIT_MSGQUEUE where the script left them unset.

func init() {
	register(Type{Name: "mq", Caps: Caps{Bridged: true, Native: true}, Check: checkMQ, Open: openMQ})
}

// Queue is the options' queue sizes, as the budget plans and checks them.
func (o Options) Queue() budget.Queue {
	return budget.Queue{MaxMsg: o.MaxMsg, MsgSize: o.MsgSize, PlanMaxMsg: o.PlanMaxMsg, PlanMsgSize: o.PlanMsgSize}
}

func checkMQ(o Options) error { return budget.CheckMQ(o.Queue()) }

func openMQ(env Env, spec Spec) (Channel, error) {
	l := budget.ReadMQLimits()
	maxmsg, msgsize := l.Resolve(spec.Options.Queue())
	name := "/" + env.Prefix + spec.ID
	if err := env.Record(KindMQ, name); err != nil {
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	sfd, err := mqueue.Open(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NONBLOCK, maxmsg, msgsize)
	// Out of budget (a run that did not PlanMQ, or other queues of the
	// user): sizes the script left unset shrink until the queue fits; not
	// a queue with a native end, whose stage was told its sizes.
	for errors.Is(err, unix.EMFILE) && !spec.HasNative() {
		switch {
		case spec.Options.MaxMsg == 0 && maxmsg > 1:
			maxmsg--
		case spec.Options.MsgSize == 0 && msgsize > 512:
			msgsize /= 2
		default:
			return nil, fmt.Errorf("edge %s: %w", spec.ID, mqOpenError(name, maxmsg, msgsize, l, err))
		}
		sfd, err = mqueue.Open(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NONBLOCK, maxmsg, msgsize)
	}
	if err != nil {
		return nil, fmt.Errorf("edge %s: %w", spec.ID, mqOpenError(name, maxmsg, msgsize, l, err))
	}
	rfd, err := mqueue.Open(name, unix.O_RDONLY|unix.O_NONBLOCK, 0, 0)
	if err != nil {
		unix.Close(sfd)
		mqueue.Unlink(name)
		return nil, fmt.Errorf("edge %s: open mq %s for reading: %w", spec.ID, name, err)
	}
	c := &mqChannel{nativeWriter: spec.NativeWriter}
	// A native end gets a descriptor of its own, blocking, opened before
	// the name goes.
	if spec.HasNative() {
		if err := c.openNatives(spec, name); err != nil {
			c.closeNatives()
			unix.Close(sfd)
			unix.Close(rfd)
			mqueue.Unlink(name)
			return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
		}
	}
	// Every end is open: the name can go.
	if err := mqueue.Unlink(name); err != nil {
		c.closeNatives()
		unix.Close(sfd)
		unix.Close(rfd)
		return nil, fmt.Errorf("edge %s: unlink mq %s: %w", spec.ID, name, err)
	}
	if a, err := mqueue.GetAttr(rfd); err != nil || a.Msgsize != msgsize {
		c.closeNatives()
		unix.Close(sfd)
		unix.Close(rfd)
		return nil, fmt.Errorf("edge %s: mq %s has message size %d, want %d (%v)", spec.ID, name, a.Msgsize, msgsize, err)
	}
	if spec.NativeWriter && spec.nativeReader(0) {
		// Both ends are native stages: no bridge, ipcflow only watches.
		unix.Close(sfd)
		unix.Close(rfd)
		c.ends = newEnds(nil, []*os.File{nil})
		return c, nil
	}
	br, w, r, err := bridge.StartMQNative(spec.ID, name, sfd, rfd, int(msgsize),
		bridge.MQNative{Writer: spec.NativeWriter, Reader: spec.nativeReader(0), Ctl: c.ctl})
	if err != nil {
		c.closeNatives()
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	c.br.Store(br)
	c.ends = newEnds(w, []*os.File{r})
	return c, nil
}

// openNatives makes the queue's control page and its native ends: each
// a descriptor of the queue of its own (blocking, as a stage's program
// expects) and a copy of the control page's.
func (c *mqChannel) openNatives(spec Spec, name string) error {
	ctl, fd, err := native.NewControl()
	if err != nil {
		return err
	}
	c.ctl, c.ctlFd = ctl, fd
	add := func(end, flags int, gone func()) error {
		q, err := mqueue.Open(name, flags, 0, 0)
		if err != nil {
			return fmt.Errorf("open mq %s for a native stage: %w", name, err)
		}
		cf, err := dupFile(fd, "mq-ctl")
		if err != nil {
			unix.Close(q)
			return fmt.Errorf("control page for a native stage: %w", err)
		}
		return c.natives.add(end, os.NewFile(uintptr(q), "mq"), cf, gone)
	}
	if spec.NativeWriter {
		err := add(WriterEnd, unix.O_WRONLY, func() {
			ctl.MarkWriterDead()
			if br := c.br.Load(); br != nil {
				br.WriterGone()
			}
		})
		if err != nil {
			return err
		}
	}
	if spec.nativeReader(0) {
		return add(0, unix.O_RDONLY, func() {
			ctl.MarkReaderGone()
			if br := c.br.Load(); br != nil {
				br.ReaderGone()
			}
		})
	}
	return nil
}

// closeNatives stops the native ends' watchers and unmaps the control page.
func (c *mqChannel) closeNatives() {
	c.natives.stop()
	c.ctlMu.Lock()
	defer c.ctlMu.Unlock()
	if c.ctl != nil {
		c.sent.Bytes, c.sent.Records = c.ctl.Sent()
		c.ctl.Close()
		unix.Close(c.ctlFd)
		c.ctl = nil
	}
}

// mqChannel is a queue's bridge (bridge.MQ) with the stages' ends.
type mqChannel struct {
	ends
	natives
	br    atomic.Pointer[bridge.MQ] // nil when both ends are native
	ctl   *native.Control           // with a native end: its flags
	ctlFd int
	// A native writer counts what it sends in the control page (no
	// bridge of ipcflow's sees its messages); sent keeps the last count
	// once the page is unmapped, for the report made after teardown.
	nativeWriter bool
	ctlMu        sync.Mutex
	sent         Stats
	closeOnce    sync.Once
}

// AddWriter gives the queue another producer (bridge.MQ.AddWriter).
func (c *mqChannel) AddWriter() (*os.File, error) {
	br := c.br.Load()
	if br == nil {
		return nil, errors.New("a queue between two native stages takes no other producer")
	}
	return br.AddWriter()
}

func (c *mqChannel) Wait() error {
	if br := c.br.Load(); br != nil {
		return br.Wait()
	}
	return nil
}

func (c *mqChannel) Close() error {
	c.closeOnce.Do(func() {
		if br := c.br.Load(); br != nil {
			br.Close()
		}
		c.closeNatives()
		c.closeUnhanded()
	})
	return nil
}

func (c *mqChannel) Stats() Stats {
	if c.nativeWriter {
		c.ctlMu.Lock()
		defer c.ctlMu.Unlock()
		if c.ctl != nil {
			c.sent.Bytes, c.sent.Records = c.ctl.Sent()
		}
		return c.sent
	}
	br := c.br.Load()
	if br == nil {
		return Stats{}
	}
	bytes, msgs := br.Counts()
	return Stats{Bytes: bytes, Records: msgs}
}

// mqOpenError explains a failed mq_open in terms of the limit that was hit.
func mqOpenError(name string, maxmsg, msgsize int64, l budget.MQLimits, err error) error {
	switch {
	case errors.Is(err, unix.EMFILE) && l.Budget >= 0:
		return fmt.Errorf("create mq %s (%d x %d bytes, %d of queue memory): the user's RLIMIT_MSGQUEUE (%d bytes) is used up (other queues of this user count too; raise it with ulimit -q): %w",
			name, maxmsg, msgsize, budget.MQCost(maxmsg, msgsize), l.Budget, err)
	case errors.Is(err, unix.ENOSPC):
		return fmt.Errorf("create mq %s: the system's queue count limit is reached (/proc/sys/fs/mqueue/queues_max): %w", name, err)
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("create mq %s: a queue of that name already exists: %w", name, err)
	}
	return fmt.Errorf("create mq %s (%d x %d bytes): %w", name, maxmsg, msgsize, err)
}

// Fill is the queue's messages at their full size, and its size (Filler);
// nothing while no bridge runs (both ends native). Callers stop asking
// before Close.
func (c *mqChannel) Fill() (used, capacity int64) {
	if br := c.br.Load(); br != nil {
		return br.Fill()
	}
	return 0, 0
}
