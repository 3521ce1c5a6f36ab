package exec

import (
	"bytes"
	"io"
	"os"
)

// mover is a data mover of the run: a channels.Mover (tee, join) or a
// --label copier.
type mover interface {
	Wait() error
	Close() error
}

// labeler copies a stage's stderr to ipcflow's, each line prefixed with the
// stage's name. Only with --label does stderr pass through ipcflow. Each
// read is turned into one write of whole prefixed lines, so that lines of
// different stages never mix on a pipe (writes up to PIPE_BUF are atomic); a
// line cut by the end of a read keeps its prefix once and continues on the
// next write, and a last line without a newline gets one.
type labeler struct {
	src  *os.File
	done chan struct{}
	err  error
}

func startLabel(src, dst *os.File, prefix string) *labeler {
	l := &labeler{src: src, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer src.Close()
		l.err = copyLabelled(dst, src, []byte(prefix))
	}()
	return l
}

func copyLabelled(dst io.Writer, src io.Reader, prefix []byte) error {
	buf := make([]byte, 64<<10)
	out := make([]byte, 0, 2*len(buf))
	atLineStart := true
	for {
		n, rerr := src.Read(buf)
		out = out[:0]
		for chunk := buf[:n]; len(chunk) > 0; {
			if atLineStart {
				out = append(out, prefix...)
			}
			i := bytes.IndexByte(chunk, '\n')
			if i < 0 {
				out = append(out, chunk...)
				atLineStart = false
				break
			}
			out = append(out, chunk[:i+1]...)
			chunk = chunk[i+1:]
			atLineStart = true
		}
		if rerr != nil && !atLineStart {
			out = append(out, '\n')
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

func (l *labeler) Wait() error { <-l.done; return l.err }

// Close ends the copy by closing its source (a teardown that cannot wait).
func (l *labeler) Close() error {
	select {
	case <-l.done:
	default:
		l.src.Close()
	}
	return nil
}
