package channels

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/bridge"
	"github.com/ipcflow/ipcflow/budget"
	"github.com/ipcflow/ipcflow/mqueue"
)

// The mq edge type: a POSIX message queue (package mqueue). The producer
// writes a pipe; the bridge (bridge.MQ) packs whole lines into messages of
// up to msgsize bytes, and unpacks them at the other end of the queue into
// the consumer's pipe. The queue's sizes are the script's, else what
// budget.PlanMQ chose, else the system defaults, shrunk to fit the user's
// RLIMIT_MSGQUEUE where the script left them unset.

func init() {
	register(Type{Name: "mq", Caps: Caps{Bridged: true}, Check: checkMQ, Open: openMQ})
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
	// Both ends are open, in this process: the name can go.
	if err := mqueue.Unlink(name); err != nil {
		unix.Close(sfd)
		unix.Close(rfd)
		return nil, fmt.Errorf("edge %s: unlink mq %s: %w", spec.ID, name, err)
	}
	if a, err := mqueue.GetAttr(rfd); err != nil || a.Msgsize != msgsize {
		unix.Close(sfd)
		unix.Close(rfd)
		return nil, fmt.Errorf("edge %s: mq %s has message size %d, want %d (%v)", spec.ID, name, a.Msgsize, msgsize, err)
	}
	br, w, r, err := bridge.StartMQ(spec.ID, name, sfd, rfd, int(msgsize))
	if err != nil {
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	return &mqChannel{ends: newEnds(w, []*os.File{r}), br: br}, nil
}

// mqChannel is a queue's bridge (bridge.MQ) with the stages' ends.
type mqChannel struct {
	ends
	br        *bridge.MQ
	closeOnce sync.Once
}

// AddWriter gives the queue another producer (bridge.MQ.AddWriter).
func (c *mqChannel) AddWriter() (*os.File, error) { return c.br.AddWriter() }

func (c *mqChannel) Wait() error { return c.br.Wait() }

func (c *mqChannel) Close() error {
	c.closeOnce.Do(func() {
		c.br.Close()
		c.closeUnhanded()
	})
	return nil
}

func (c *mqChannel) Stats() Stats {
	bytes, msgs := c.br.Counts()
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

// Fill is the queue's messages at their full size, and its size (Filler).
// Callers stop asking before Close.
func (c *mqChannel) Fill() (used, capacity int64) { return c.br.Fill() }
