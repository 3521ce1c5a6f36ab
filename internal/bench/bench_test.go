package bench

import (
	"errors"
	"testing"
)

// TestRoundTrip: every object-level round trip works (figures are for
// ipcflow bench; here only that each bounces its messages).
func TestRoundTrip(t *testing.T) {
	for _, c := range [][2]string{{"pipe", ""}, {"mq", ""}, {"shm", ""}, {"socket", "unix"}, {"socket", "tcp"}, {"socket", "udp"}} {
		d, err := RoundTrip(c[0], c[1], 200)
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		t.Logf("%s %s: %v", c[0], c[1], d)
	}
	if _, err := RoundTrip("mmap", "", 10); !errors.Is(err, ErrNoRoundTrip) {
		t.Fatalf("mmap: %v", err)
	}
}

// TestObjectThroughput: every object-level stream moves all its bytes
// (move checks the count read against the count written), framed or not,
// and the types without an object of their own say so.
func TestObjectThroughput(t *testing.T) {
	for _, c := range [][2]string{{"pipe", ""}, {"fifo", ""}, {"mq", ""}, {"shm", ""}, {"socket", "unix"}, {"socket", "tcp"}} {
		bps, err := ObjectThroughput(c[0], c[1], 4<<20)
		if err != nil || bps <= 0 {
			t.Fatalf("%v: %v, %v", c, bps, err)
		}
		t.Logf("%s %s: %.2f GB/s", c[0], c[1], bps/1e9)
	}
	for _, c := range [][2]string{{"mmap", ""}, {"socket", "udp"}} {
		if _, err := ObjectThroughput(c[0], c[1], 1<<20); !errors.Is(err, ErrNoObjectFigure) {
			t.Errorf("%v: %v, want ErrNoObjectFigure", c, err)
		}
	}
	raw, err := mqRateEnds(false)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.cleanup()
	if _, err := raw.move(lineBlock(), 40); err != nil {
		t.Fatalf("raw mq: %v", err)
	}
}

// BenchmarkMQ is the queue with ipcflow's own framing, no pipe and no
// process: one OS thread packs 80-byte lines into messages with the
// bridge's packer (bridge.PackMQ), another takes them off with its
// unpacker (bridge.UnpackMQ), each waiting in poll(2) on a full or empty queue as
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

func TestByteUnits(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{siBytes(0), "0 B"}, {siBytes(999), "999 B"}, {siBytes(1234567890), "1.2 GB"}, {siBytes(980e6), "980 MB"},
		{iecBytes(16 << 20), "16 MiB"}, {iecBytes(1536), "1.5 KiB"}, {iecBytes(256 << 20), "256 MiB"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
