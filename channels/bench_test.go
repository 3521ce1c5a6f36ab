package channels

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Benchmarks of the transports inside ipcflow. `ipcflow bench` measures
// the same between real processes; these isolate ipcflow's own part.
//
//	go test ./channels -run XXX -bench . -benchtime 2s

// BenchmarkRing is the ring alone: ipcflow's writer and reader, each on
// its own OS thread (so, on a machine with two CPUs or more, on different
// CPUs when they are free), 64 KiB writes, 1 MiB ring.
func BenchmarkRing(b *testing.B) {
	for _, chunk := range []int{4 << 10, 64 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("%dKiB", chunk>>10), func(b *testing.B) {
			r := newTestRing(b, 1<<20, 1)
			src := make([]byte, chunk)
			b.SetBytes(int64(chunk))
			done := make(chan struct{})
			go func() {
				runtime.LockOSThread()
				defer close(done)
				rd := r.Reader(0)
				dst := make([]byte, chunk)
				for {
					if _, err := rd.Read(dst); err != nil {
						return
					}
				}
			}()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			w := r.Writer()
			b.ResetTimer()
			for range b.N {
				w.Write(src)
			}
			w.Close()
			<-done
		})
	}
}

// BenchmarkTypes moves data through each edge type with goroutines of the
// benchmark at both ends (no processes): the bridges' cost per byte.
// Writes of 128 KiB of 80-byte lines, as GNU cat would write a text file.
func BenchmarkTypes(b *testing.B) {
	chunk := make([]byte, 128<<10)
	for i := range chunk {
		chunk[i] = 'a' + byte(i%26)
		if i%80 == 79 {
			chunk[i] = '\n'
		}
	}
	for _, h := range allHops() {
		if h.opts.Socket == "udp" {
			continue // loses under this load by design
		}
		b.Run(h.String(), func(b *testing.B) {
			env := testEnv(b)
			ch, err := Open(env, Spec{ID: "e1", Type: h.typ, Options: h.opts, Readers: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer ch.Close()
			w, r := ch.Writer(), ch.Reader(0)
			done := make(chan int64)
			go func() {
				n, _ := io.Copy(io.Discard, onlyReader{r})
				r.Close()
				done <- n
			}()
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for range b.N {
				if _, err := w.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			w.Close()
			if n := <-done; n != int64(b.N*len(chunk)) {
				b.Fatalf("read %d bytes, wrote %d", n, b.N*len(chunk))
			}
			if err := ch.Wait(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// onlyReader hides WriterTo/ReaderFrom, so io.Copy reads with its buffer.
type onlyReader struct{ f *os.File }

func (o onlyReader) Read(p []byte) (int, error) { return o.f.Read(p) }

// BenchmarkMQ is the queue with ipcflow's own framing, no pipe and no
// process: one OS thread packs 80-byte lines into messages with the
// bridge's packer (mqProducer.pack), another takes them off with its
// unpacker (mqUnpack), each waiting in poll(2) on a full or empty queue as
// a separate sender and receiver must. "raw" is the same queue with
// unframed messages of msgsize bytes, the C reference's pattern, so the two
// compare as a ratio in one run.
func BenchmarkMQ(b *testing.B) {
	l := ReadMQLimits()
	msgsize := int(min(l.MsgsizeMax, 8192))
	const block = 80 * 13107 // whole lines: the packer keeps a partial line back
	for _, framed := range []bool{true, false} {
		name := "raw"
		if framed {
			name = "packed80"
		}
		b.Run(name, func(b *testing.B) {
			qname := "/" + testEnv(b).Prefix + "bench" + name
			send, err := mqOpen(qname, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NONBLOCK, l.MsgMax, int64(msgsize))
			if err != nil {
				b.Skipf("mq: %v", err)
			}
			recv, err := mqOpen(qname, unix.O_RDONLY|unix.O_NONBLOCK, 0, 0)
			UnlinkMQ(qname)
			if err != nil {
				unix.Close(send)
				b.Fatal(err)
			}
			defer unix.Close(send)
			defer unix.Close(recv)
			got := make(chan int64)
			go func() {
				runtime.LockOSThread()
				buf := make([]byte, block+msgsize)
				var total int64
				for {
					have, eof, err := mqUnpack(recv, msgsize, buf, 0)
					total += int64(have)
					if eof {
						break
					}
					if err == unix.EAGAIN {
						waitFD(recv, unix.POLLIN, nil)
					} else if err != nil {
						b.Error(err)
						break
					}
				}
				got <- total
			}()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			src := make([]byte, block+1)
			for i := range block {
				src[i] = 'a' + byte(i%26)
				if i%80 == 79 {
					src[i] = '\n'
				}
			}
			p := &mqProducer{fd: 0, buf: src}
			var mid bool
			b.SetBytes(block)
			b.ResetTimer()
			for range b.N {
				if !framed {
					for off := 0; off < block; off += msgsize {
						m := src[off:min(off+msgsize, block)]
						for mqSend(send, m) == unix.EAGAIN {
							waitFD(send, unix.POLLOUT, nil)
						}
					}
					continue
				}
				p.start, p.have = 0, block
				for p.have > 0 {
					if _, _, err := p.pack(send, msgsize, &mid); err == unix.EAGAIN {
						waitFD(send, unix.POLLOUT, nil)
					} else if err != nil {
						b.Fatal(err)
					}
				}
			}
			for mqSend(send, []byte{mqEOF}) == unix.EAGAIN {
				waitFD(send, unix.POLLOUT, nil)
			}
			if n := <-got; framed && n != int64(b.N)*block {
				b.Fatalf("received %d bytes, sent %d", n, int64(b.N)*block)
			}
		})
	}
}
