package channels

import (
	"fmt"
	"os"

	"github.com/ipcflow/ipcflow/budget"
)

// The pipe edge type: one pipe(2) between the two stages. ipcflow makes it,
// hands the write end to the producer and the read end to the consumer,
// and no byte passes through ipcflow. Fan-out over pipes is a Tee (exec
// starts one), so a pipe channel always has one reader.
func init() {
	register(Type{
		Name:  "pipe",
		Caps:  Caps{},
		Check: checkPipeSize,
		Open:  openPipe,
	})
}

// checkPipeSize refuses a buffer the kernel would refuse.
func checkPipeSize(o Options) error { return budget.CheckPipeSize(o.Size) }

func openPipe(env Env, spec Spec) (Channel, error) {
	r, w, err := budget.Pipe(spec.Options.Size)
	if err != nil {
		return nil, fmt.Errorf("edge %s: %w", spec.ID, err)
	}
	return &fdChannel{r: r, w: w}, nil
}

// fdChannel is a channel whose two ends are plain fds of one kernel object
// (a pipe, a FIFO) and that has no bridge. onClose, if set, runs once after
// the fds are closed (the FIFO with path= removes its name).
type fdChannel struct {
	r, w    *os.File
	rGiven  bool // handed to exec, which closes it from then on
	wGiven  bool
	onClose func() error
	closed  bool
}

// Writer hands over the write end: from then on exec closes it. Every call
// returns the same file.
func (c *fdChannel) Writer() *os.File {
	c.wGiven = true
	return c.w
}

// Reader hands over the read end (there is only reader 0; others are nil).
func (c *fdChannel) Reader(i int) *os.File {
	if i != 0 {
		return nil
	}
	c.rGiven = true
	return c.r
}

// Wait returns at once: the bytes go from stage to stage in the kernel.
func (c *fdChannel) Wait() error { return nil }

// Close closes the ends not handed out and removes a named object.
func (c *fdChannel) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	if !c.rGiven {
		c.r.Close()
	}
	if !c.wGiven {
		c.w.Close()
	}
	if c.onClose != nil {
		return c.onClose()
	}
	return nil
}

// Stats is empty: no byte passes through ipcflow, so it counts nothing.
func (c *fdChannel) Stats() Stats { return Stats{} }
