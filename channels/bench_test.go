package channels

import (
	"io"
	"os"
	"testing"
)

// Benchmarks of the edge types inside ipcflow. `ipcflow bench` measures
// the same between real processes; these isolate ipcflow's own part.
//
//	go test ./channels -run XXX -bench . -benchtime 2s

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
