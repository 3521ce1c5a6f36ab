package channels

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"testing"
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
// compare as a ratio in one run. `ipcflow bench` shows the packed figure
// as mq's OBJECT column (ObjectThroughput).
func BenchmarkMQ(b *testing.B) {
	for _, framed := range []bool{true, false} {
		name := "raw"
		if framed {
			name = "packed80"
		}
		b.Run(name, func(b *testing.B) {
			ends, err := mqRateEnds(framed)
			if err != nil {
				b.Skipf("mq: %v", err)
			}
			defer ends.cleanup()
			block := lineBlock()
			b.SetBytes(int64(len(block)))
			b.ResetTimer()
			if _, err := ends.move(block, int64(b.N)); err != nil {
				b.Fatal(err)
			}
		})
	}
}
