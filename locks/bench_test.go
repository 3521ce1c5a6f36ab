package locks

import (
	"context"
	"strconv"
	"testing"
)

// The Go side of bench/sem/run.sh, which prints these beside the same
// measured for glibc (bench/sem/bench.c).

// BenchmarkUncontended: one Wait+Post pair per op, no other taker.
func BenchmarkUncontended(b *testing.B) {
	s := newTestSem(b, 1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Wait(ctx); err != nil {
			b.Fatal(err)
		}
		if err := s.Post(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPingPong: a helper process and this one alternate on two
// semaphores (we post A and wait B; it waits A and posts B), one round trip
// per op: a futex wake and sleep each way.
func BenchmarkPingPong(b *testing.B) {
	a, bb := newTestSem(b, 0), newTestSem(b, 0)
	ctx := context.Background()
	cmd := helperCmd(b, "pingpong", a.Name(), bb.Name(), strconv.Itoa(b.N+1))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	// One round trip first, so the helper is up before the clock starts.
	a.Post()
	if err := bb.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.Post()
		if err := bb.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := cmd.Wait(); err != nil {
		b.Fatal(err)
	}
}
