package movers

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/ipcflow/ipcflow/budget"
	"github.com/ipcflow/ipcflow/fdio"
)

// Throughput of the data movers against a plain pipe, with ipcflow's own
// goroutines as producer (write(2) of 128 KiB blocks) and consumers
// (read(2) into 128 KiB, as cat does). b.SetBytes makes go test print MB/s:
//
//	go test ./movers/ -run '^$' -bench 'Pipe|Move|Tee' -benchtime 2000x

const benchBlock = 128 << 10

func benchProducer(b *testing.B, w *os.File) {
	buf := make([]byte, benchBlock)
	for i := range buf {
		buf[i] = byte(i)
	}
	for range b.N {
		if _, err := w.Write(buf); err != nil {
			b.Error(err)
			break
		}
	}
	w.Close()
}

func benchConsumer(r *os.File, wg *sync.WaitGroup) {
	defer wg.Done()
	buf := make([]byte, benchBlock)
	for {
		if n, _ := r.Read(buf); n == 0 {
			break
		}
	}
	r.Close()
}

func benchPipe(b *testing.B, size int64) (*os.File, *os.File) {
	r, w, err := budget.Pipe(size)
	if err != nil {
		b.Fatal(err)
	}
	return r, w
}

var benchSizes = []int64{64 << 10, 1 << 20}

// The reference: producer -> pipe -> consumer.
func BenchmarkPipe(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("buf=%s", bufName(size)), func(b *testing.B) {
			b.SetBytes(benchBlock)
			r, w := benchPipe(b, size)
			var wg sync.WaitGroup
			wg.Add(1)
			go benchConsumer(r, &wg)
			benchProducer(b, w)
			wg.Wait()
		})
	}
}

// producer -> pipe -> Move (splice) -> pipe -> consumer.
func BenchmarkMove(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("buf=%s", bufName(size)), func(b *testing.B) {
			b.SetBytes(benchBlock)
			r1, w1 := benchPipe(b, size)
			r2, w2 := benchPipe(b, size)
			var wg sync.WaitGroup
			wg.Add(2)
			go benchConsumer(r2, &wg)
			go func() {
				defer wg.Done()
				if _, err := fdio.Move(w2, r1); err != nil {
					b.Error(err)
				}
				w2.Close()
				r1.Close()
			}()
			benchProducer(b, w1)
			wg.Wait()
		})
	}
}

// producer -> pipe -> Tee -> n pipes -> n consumers. Bytes counted once
// (the stream), so MB/s compares directly with BenchmarkPipe.
func BenchmarkTee(b *testing.B) {
	for _, size := range benchSizes {
		for _, n := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("buf=%s/readers=%d", bufName(size), n), func(b *testing.B) {
				b.SetBytes(benchBlock)
				r, w := benchPipe(b, size)
				var wg sync.WaitGroup
				var dsts []*os.File
				for range n {
					cr, cw := benchPipe(b, size)
					dsts = append(dsts, cw)
					wg.Add(1)
					go benchConsumer(cr, &wg)
				}
				m := StartTee(r, dsts, b.TempDir())
				benchProducer(b, w)
				if err := m.Wait(); err != nil {
					b.Error(err)
				}
				wg.Wait()
				b.ReportMetric(float64(m.spill.Load())/float64(b.N*benchBlock), "spilled/byte")
			})
		}
	}
}

// What tee(1) does, for comparison: read into a buffer, write it to each
// output in turn.
func BenchmarkTeeUserspace(b *testing.B) {
	for _, size := range benchSizes {
		for _, n := range []int{2, 4} {
			b.Run(fmt.Sprintf("buf=%s/readers=%d", bufName(size), n), func(b *testing.B) {
				b.SetBytes(benchBlock)
				r, w := benchPipe(b, size)
				var wg sync.WaitGroup
				var dsts []*os.File
				for range n {
					cr, cw := benchPipe(b, size)
					dsts = append(dsts, cw)
					wg.Add(1)
					go benchConsumer(cr, &wg)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 128<<10)
					for {
						k, _ := r.Read(buf)
						if k == 0 {
							break
						}
						for _, d := range dsts {
							d.Write(buf[:k])
						}
					}
					for _, d := range dsts {
						d.Close()
					}
					r.Close()
				}()
				benchProducer(b, w)
				wg.Wait()
			})
		}
	}
}

// bufName names a pipe buffer size in a benchmark's name: "64 KiB".
func bufName(n int64) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
