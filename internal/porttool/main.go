// Porttool is a native stage for ipcflow's tests and benchmarks, in Go;
// native/c/testdata/porttool.c is its twin in C, with the same commands,
// so that a test can put either language at either end of an edge.
//
//	porttool copy FROM TO          FROM, TO: a port, or - (stdin, stdout)
//	porttool die FROM TO N         copy N bytes, then SIGKILL itself
//	porttool send TO               each stdin line, newline left out, as one mq message
//	porttool recv FROM             each mq message, then a newline, to stdout
//	porttool gen TO BYTES CHUNK    BYTES bytes in CHUNK-byte writes (in place on shm,
//	                               whole messages of CHUNK bytes on mq if they fit)
//	porttool sink FROM             read to the end (copying out, 64 KiB at a time);
//	                               print the bytes and the ns from the first byte to the end
//	porttool at FROM OFF LEN       mmap: read to the end, then print LEN bytes of the
//	                               recording from OFF (random access: Bytes)
//	porttool ping IN OUT ROUNDS SIZE   round trips, print the median in ns
//	porttool pong IN OUT           echo what comes in
//
// Between two shm ports copy works in place (borrow, reserve, copy once,
// commit, release); from stdin into shm it reads straight into the ring,
// from shm to stdout it writes straight from it. A writer whose readers
// have gone dies of SIGPIPE.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/ipcflow/ipcflow/native"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, native.ErrReadersGone) {
			native.DieOfSIGPIPE()
		}
		fmt.Fprintln(os.Stderr, "porttool:", err)
		os.Exit(1)
	}
}

func reader(name string) (io.ReadCloser, error) {
	if name == "-" {
		return os.Stdin, nil
	}
	return native.OpenReader(name)
}

func writer(name string) (io.WriteCloser, error) {
	if name == "-" {
		return os.Stdout, nil
	}
	return native.OpenWriter(name)
}

// spanWriter and spanReader are the in-place calls of shm and mmap ports.
type spanWriter interface {
	Reserve() ([]byte, error)
	Commit(n int)
}

type spanReader interface {
	Borrow() ([]byte, error)
	Release(n int)
}

func count(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "porttool: not a count:", s)
		os.Exit(2)
	}
	return n
}

func run(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: porttool copy|die|send|recv|gen|sink|ping|pong ...")
	}
	switch cmd := args[0]; {
	case cmd == "copy" && len(args) == 3:
		return copyPorts(args[1], args[2], -1)
	case cmd == "die" && len(args) == 4:
		return copyPorts(args[1], args[2], count(args[3]))
	case cmd == "send" && len(args) == 2:
		return send(args[1])
	case cmd == "recv" && len(args) == 2:
		return recv(args[1])
	case cmd == "gen" && len(args) == 4:
		return gen(args[1], count(args[2]), int(count(args[3])))
	case cmd == "sink" && len(args) == 2:
		return sink(args[1])
	case cmd == "at" && len(args) == 4:
		return at(args[1], count(args[2]), count(args[3]))
	case cmd == "ping" && len(args) == 5:
		return ping(args[1], args[2], int(count(args[3])), int(count(args[4])))
	case cmd == "pong" && len(args) == 3:
		return pong(args[1], args[2])
	}
	return fmt.Errorf("bad command %q", args)
}

// copyPorts copies from to to; limit >= 0: after limit bytes, SIGKILL.
func copyPorts(from, to string, limit int64) error {
	in, err := reader(from)
	if err != nil {
		return err
	}
	out, err := writer(to)
	if err != nil {
		return err
	}
	var moved int64
	si, inPlace := in.(spanReader)
	so, outPlace := out.(spanWriter)
	if inPlace && outPlace {
		for limit < 0 || moved < limit {
			src, err := si.Borrow()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			dst, err := so.Reserve()
			if err != nil {
				return err
			}
			n := native.Copy(dst, src)
			if limit >= 0 {
				n = min(n, int(limit-moved))
			}
			so.Commit(n)
			si.Release(n)
			moved += int64(n)
		}
	} else if rf, ok := out.(io.ReaderFrom); ok && outPlace && limit < 0 {
		// read(2) straight into the ring or the file's mapping
		if _, err := rf.ReadFrom(in); err != nil {
			return err
		}
	} else if wt, ok := in.(io.WriterTo); ok && inPlace && limit < 0 && to == "-" {
		// write(2) straight from it
		if _, err := wt.WriteTo(out); err != nil {
			return err
		}
	} else {
		buf := make([]byte, 256<<10)
		for limit < 0 || moved < limit {
			want := len(buf)
			if limit >= 0 {
				want = int(min(int64(want), limit-moved))
			}
			n, err := in.Read(buf[:want])
			if n > 0 {
				if _, werr := out.Write(buf[:n]); werr != nil {
					return werr
				}
				moved += int64(n)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
	}
	if limit >= 0 {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Hour)
	}
	in.Close()
	return out.Close()
}

func send(to string) error {
	w, err := native.OpenMQWriter(to)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	for len(data) > 0 {
		line := data
		if i := slices.Index(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if err := w.Send(line); err != nil {
			return err
		}
	}
	return w.Close()
}

func recv(from string) error {
	r, err := native.OpenMQReader(from)
	if err != nil {
		return err
	}
	for {
		msg, err := r.Receive()
		if err == io.EOF {
			return r.Close()
		}
		if err != nil {
			return err
		}
		os.Stdout.Write(append(msg, '\n'))
	}
}

func gen(to string, total int64, chunk int) error {
	out, err := writer(to)
	if err != nil {
		return err
	}
	buf := make([]byte, chunk, chunk+1) // room for an mq trailer: Send copies nothing
	for i := range buf {
		buf[i] = byte('a' + i%26)
	}
	sw, isShm := out.(spanWriter)
	if mw, ok := out.(*native.MQWriter); ok && chunk <= mw.MaxPayload() {
		for done := int64(0); done < total; {
			want := int(min(int64(chunk), total-done))
			if err := mw.Send(buf[:want]); err != nil {
				return err
			}
			done += int64(want)
		}
		return out.Close()
	}
	for done := int64(0); done < total; {
		want := int(min(int64(chunk), total-done))
		if isShm {
			span, err := sw.Reserve()
			if err != nil {
				return err
			}
			n := native.Copy(span, buf[:want])
			sw.Commit(n)
			done += int64(n)
			continue
		}
		if _, err := out.Write(buf[:want]); err != nil {
			return err
		}
		done += int64(want)
	}
	return out.Close()
}

func sink(from string) error {
	in, err := reader(from)
	if err != nil {
		return err
	}
	var total int64
	var start time.Time
	buf := make([]byte, 64<<10)
	for {
		n, err := in.Read(buf)
		if total == 0 && n > 0 {
			start = time.Now()
		}
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	fmt.Println(total, time.Since(start).Nanoseconds())
	return in.Close()
}

func at(from string, off, n int64) error {
	r, err := native.OpenMmapReader(from)
	if err != nil {
		return err
	}
	for {
		span, err := r.Borrow()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		r.Release(len(span))
	}
	rec := r.Bytes()
	if off+n > int64(len(rec)) {
		return fmt.Errorf("the recording has %d bytes, not %d", len(rec), off+n)
	}
	if _, err := os.Stdout.Write(rec[off : off+n]); err != nil {
		return err
	}
	return r.Close()
}

func ping(inName, outName string, rounds, size int) error {
	in, err := reader(inName)
	if err != nil {
		return err
	}
	out, err := writer(outName)
	if err != nil {
		return err
	}
	msg, back := make([]byte, size), make([]byte, size)
	times := make([]time.Duration, rounds)
	for i := range rounds {
		t0 := time.Now()
		if _, err := out.Write(msg); err != nil {
			return err
		}
		if _, err := io.ReadFull(in, back); err != nil {
			return err
		}
		times[i] = time.Since(t0)
	}
	slices.Sort(times)
	fmt.Println(times[len(times)/2].Nanoseconds())
	out.Close()
	return in.Close()
}

func pong(inName, outName string) error {
	in, err := reader(inName)
	if err != nil {
		return err
	}
	out, err := writer(outName)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return out.Close()
		}
		if err != nil {
			return err
		}
	}
}
