package exec

import (
	"errors"
	"io"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/movers"
	"github.com/ipcflow/ipcflow/native"
)

// An unordered replicated stage fed by one mq edge takes its work from
// the queue itself (StagePlan.WorkQueue): the runner holds the reading end
// of the queue as a native stage would (IPCFLOW_PORT_IN), and a feeder per
// copy receives messages straight into a buffer and writes them into its
// copy's input. Each message goes to one copy; a long line that spans
// messages (MQContinues) goes whole to the copy that received its first
// piece, the feeder receiving the rest before it lets another receive.
// A copy that stops reading leaves the rest of the queue to the others;
// one that restarts (replicarestart.go) keeps its feeder, which goes on
// receiving for the next process.

// openWorkQueue opens the stage's mq port, keeps its descriptors from the
// copies (close-on-exec), and drops its variable from their environment.
func (r *replicaRunner) openWorkQueue() (*native.MQReader, error) {
	s, err := native.Lookup("in")
	if err != nil {
		return nil, err
	}
	for _, fd := range []int{s.Fd, s.Ctl, s.Life} {
		if fd >= 0 {
			unix.CloseOnExec(fd)
		}
	}
	r.env, _, _ = takeVar(r.env, native.Env("in"))
	return native.NewMQReader(s)
}

// feedFromQueue feeds copies ins[i] from q until the end of the stream,
// an abort, or every copy having stopped reading.
func (r *replicaRunner) feedFromQueue(q *native.MQReader, ins []int) {
	var mu sync.Mutex // one feeder receives at a time: a long line's pieces stay together
	var feeders sync.WaitGroup
	for i, in := range ins {
		feeders.Add(1)
		go func() {
			defer feeders.Done()
			defer r.closeInput(i, in)
			// Room for a batch of messages: a long line's pieces land one
			// after another and go to the copy in one write.
			buf := make([]byte, max(replicaFirstBlock, 2*q.MsgSize()))
			for !r.isAborted() {
				n, err := r.receiveLines(&mu, q, buf, in)
				if n > 0 {
					if werr := movers.WriteAll(in, buf[:n]); werr != nil {
						return // this copy stopped reading: the others take the rest
					}
				}
				if err != nil {
					// errCopyStopped: this copy stopped reading in the
					// middle of a long line; the others take the rest.
					if !errors.Is(err, io.EOF) && err != errCopyStopped {
						r.fail(1, 0, "read: "+err.Error())
					}
					return
				}
			}
		}()
	}
	feeders.Wait()
	q.Close()
}

// errCopyStopped: a copy stopped reading while its feeder wrote it the
// pieces of a long line. It ends that feeder alone, not the stage.
var errCopyStopped = errors.New("the copy stopped reading")

// receiveLines receives one message, and the rest of its last line when
// that spans messages, into buf, then whatever messages wait now while
// buf has room (and their lines' rest); a line longer than buf goes to in piece
// by piece as buf fills. When the copy stops reading in the middle of
// such a line, the rest of the line is received and dropped with the
// copy, with the lines that share its last message (as a copy's batch is
// lost when it stops reading), so that the next feeder starts at a line;
// errCopyStopped is returned.
func (r *replicaRunner) receiveLines(mu *sync.Mutex, q *native.MQReader, buf []byte, in int) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	have := 0
	var werr error
	for {
		if len(buf)-have < q.MsgSize() {
			if werr == nil {
				werr = movers.WriteAll(in, buf[:have])
			}
			have = 0
		}
		n, more, err := q.ReceiveFramed(buf[have:])
		have += n
		// A line done and room for a message: take what waits now, so
		// that the copy gets one write for many messages; a message whose
		// line goes on is followed by its pieces above, as ever.
		for err == nil && !more && werr == nil && len(buf)-have >= q.MsgSize() {
			var ok bool
			if n, more, ok, err = q.TryReceiveFramed(buf[have:]); !ok {
				break
			}
			have += n
		}
		if err != nil || !more {
			if werr != nil && (err == nil || errors.Is(err, io.EOF)) {
				return 0, errCopyStopped
			}
			return have, err
		}
	}
}
