package movers

import (
	"bytes"
	"io"
	"os"
)

// Running is what an owner holds of any mover: a Mover (tee, join), a
// Labeler, or a stand-in of its own.
type Running interface {
	// Wait blocks until the mover has finished and returns its error.
	Wait() error
	// Close stops the mover if it still runs.
	Close() error
}

// Labeler copies a stage's stderr to ipcflow's, each line prefixed with the
// stage's name. Only with --label does stderr pass through ipcflow. Only
// whole lines are written, one write(2) per read's worth, so that lines of
// different stages never mix (writes up to PIPE_BUF are atomic on a pipe);
// a line is held back until its newline comes, unless it grows past the
// buffer, and a last line without a newline gets one.
type Labeler struct {
	src  *os.File
	done chan struct{}
	err  error
}

// StartLabel starts copying src to dst with prefix before every line. It
// owns src and closes it at the end; dst stays open.
func StartLabel(src, dst *os.File, prefix string) *Labeler {
	l := &Labeler{src: src, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer src.Close()
		l.err = copyLabelled(dst, src, []byte(prefix))
	}()
	return l
}

// labelBuf bounds a line held back for its newline.
const labelBuf = 64 << 10

func copyLabelled(dst io.Writer, src io.Reader, prefix []byte) error {
	buf := make([]byte, labelBuf)
	out := make([]byte, 0, 2*labelBuf)
	var partial []byte // the start of a line whose newline has not come
	midLine := false   // partial already went out with its prefix
	for {
		n, rerr := src.Read(buf)
		out = out[:0]
		data := buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				partial = append(partial, data...)
				break
			}
			if !midLine {
				out = append(out, prefix...)
			}
			out = append(out, partial...)
			out = append(out, data[:i+1]...)
			partial, midLine = partial[:0], false
			data = data[i+1:]
		}
		if len(partial) >= labelBuf || rerr != nil && len(partial) > 0 {
			// Too long to hold, or the end: out it goes.
			if !midLine {
				out = append(out, prefix...)
			}
			out = append(out, partial...)
			partial, midLine = partial[:0], true
			if rerr != nil {
				out, midLine = append(out, '\n'), false
			}
		}
		if len(out) > 0 {
			if _, err := dst.Write(out); err != nil {
				return nil // ipcflow's stderr is gone: nothing to tell anyone
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func (l *Labeler) Wait() error { <-l.done; return l.err }

// Close ends the copy by closing its source (a teardown that cannot wait).
func (l *Labeler) Close() error {
	select {
	case <-l.done:
	default:
		l.src.Close()
	}
	return nil
}
