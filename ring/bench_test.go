package ring

import (
	"fmt"
	"runtime"
	"testing"
)

//	go test ./ring -run XXX -bench . -benchtime 2s

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
