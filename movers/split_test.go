package movers

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// splitInputs are streams with the cases a cut must get right.
func splitInputs() map[string][]byte {
	r := rand.New(rand.NewSource(1))
	var mixed bytes.Buffer
	for mixed.Len() < 300_000 {
		n := r.Intn(200)
		if r.Intn(50) == 0 {
			n = 20_000 + r.Intn(20_000) // longer than the blocks
		}
		for range n {
			mixed.WriteByte(byte('a' + r.Intn(26)))
		}
		if r.Intn(30) == 0 {
			mixed.WriteByte(0)
		}
		mixed.WriteByte('\n')
	}
	return map[string][]byte{
		"mixed":        mixed.Bytes(),
		"no-newline":   append(bytes.Repeat([]byte("line\n"), 5000), "tail"...),
		"one-long":     bytes.Repeat([]byte{'x'}, 100_000),
		"empty":        nil,
		"newlines":     bytes.Repeat([]byte{'\n'}, 50_000),
		"long-at-end":  append(bytes.Repeat([]byte("ab\n"), 3000), bytes.Repeat([]byte{'z'}, 50_000)...),
		"exact-blocks": bytes.Repeat([]byte(strings.Repeat("y", 4095)+"\n"), 20),
	}
}

// feed returns a pipe's read end that carries in, written by a goroutine.
func feed(t *testing.T, in []byte, pipe bool) int {
	t.Helper()
	if !pipe {
		f, err := os.CreateTemp(t.TempDir(), "in")
		if err != nil {
			t.Fatal(err)
		}
		f.Write(in)
		f.Seek(0, 0)
		fd, _ := unix.Dup(int(f.Fd()))
		f.Close()
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	go func() {
		WriteAll(p[1], in)
		unix.Close(p[1])
	}()
	t.Cleanup(func() { unix.Close(p[0]) })
	return p[0]
}

// checkBlocks: the blocks put together are the input; every block but the
// last ends in a newline; a block is no shorter than the size unless it
// is the last, and longer only to end a line.
func checkBlocks(t *testing.T, in []byte, blocks [][]byte, size int) {
	t.Helper()
	if got := bytes.Join(blocks, nil); !bytes.Equal(got, in) {
		t.Fatalf("blocks join to %d bytes, want the input's %d", len(got), len(in))
	}
	for i, b := range blocks {
		last := i == len(blocks)-1
		if len(b) == 0 {
			t.Errorf("block %d is empty", i)
		}
		if !last && b[len(b)-1] != '\n' {
			t.Errorf("block %d of %d does not end a line", i, len(blocks))
		}
		if i := bytes.IndexByte(b, '\n'); len(b) > size && i >= 0 && i+1 < len(b) && bytes.LastIndexByte(b[:size], '\n') >= 0 {
			// Longer than the size, yet a newline within it: cut too late.
			if bytes.LastIndexByte(b[:len(b)-1], '\n') >= size {
				t.Errorf("block %d is %d bytes, past the size %d with a newline inside it", i, len(b), size)
			}
		}
	}
}

func TestSplitterNext(t *testing.T) {
	for name, in := range splitInputs() {
		for _, size := range []int{1, 7, 4096, 65536} {
			for _, pipe := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%d/pipe=%v", name, size, pipe), func(t *testing.T) {
					s := NewSplitter(feed(t, in, pipe), size)
					var blocks [][]byte
					for seq := 0; ; seq++ {
						b, err := s.Next(seq)
						if err != nil {
							t.Fatal(err)
						}
						if b == nil {
							break
						}
						if b.Seq != seq {
							t.Fatalf("block seq %d, want %d", b.Seq, seq)
						}
						blocks = append(blocks, slices.Clone(b.Data))
						s.Put(b)
					}
					checkBlocks(t, in, blocks, size)
				})
			}
		}
	}
}

func TestSplitterNextFile(t *testing.T) {
	for name, in := range splitInputs() {
		for _, size := range []int{1, 7, 4096, 65536, 1 << 20} {
			for _, pipe := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%d/pipe=%v", name, size, pipe), func(t *testing.T) {
					s := NewSplitter(feed(t, in, pipe), size)
					var blocks [][]byte
					for {
						fd, err := unix.MemfdCreate("block", unix.MFD_CLOEXEC)
						if err != nil {
							t.Fatal(err)
						}
						n, err := s.NextFile(fd)
						if err != nil {
							t.Fatal(err)
						}
						var st unix.Stat_t
						unix.Fstat(fd, &st)
						if st.Size != n {
							t.Fatalf("block file is %d bytes, NextFile says %d", st.Size, n)
						}
						if off, _ := unix.Seek(fd, 0, 1); off != 0 {
							t.Fatalf("the block's offset is %d, want 0 for its reader", off)
						}
						b := make([]byte, n)
						if n > 0 {
							unix.Pread(fd, b, 0)
						}
						unix.Close(fd)
						if n == 0 {
							break
						}
						blocks = append(blocks, b)
					}
					checkBlocks(t, in, blocks, size)
				})
			}
		}
	}
}

// TestSplitterGrows: SetSize takes effect on the next block.
func TestSplitterGrows(t *testing.T) {
	in := bytes.Repeat([]byte("0123456789abcde\n"), 10000) // 16-byte lines
	s := NewSplitter(feed(t, in, true), 64)
	var sizes []int
	for size := 64; ; size *= 2 {
		s.SetSize(size)
		b, err := s.Next(0)
		if err != nil || b == nil {
			break
		}
		sizes = append(sizes, len(b.Data))
	}
	if len(sizes) < 4 || sizes[0] != 64 || sizes[1] != 128 || sizes[2] != 256 {
		t.Errorf("block sizes %v, want 64, 128, 256, ...", sizes[:min(4, len(sizes))])
	}
}

// TestSendFile: a file's bytes into a pipe (splice) and into a regular
// file (sendfile), and EPIPE when the pipe's reader has gone.
func TestSendFile(t *testing.T) {
	data := bytes.Repeat([]byte("some bytes\n"), 300_000)
	src, _ := unix.MemfdCreate("src", unix.MFD_CLOEXEC)
	defer unix.Close(src)
	WriteAll(src, data)
	var p [2]int
	unix.Pipe2(p[:], unix.O_CLOEXEC)
	got := make(chan []byte)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 1<<16)
		for {
			n, _ := unix.Read(p[0], buf)
			if n <= 0 {
				break
			}
			b.Write(buf[:n])
		}
		got <- b.Bytes()
	}()
	if err := SendFile(p[1], src, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	unix.Close(p[1])
	if b := <-got; !bytes.Equal(b, data) {
		t.Errorf("pipe got %d bytes, want %d", len(b), len(data))
	}
	unix.Close(p[0])
	dst, _ := unix.MemfdCreate("dst", unix.MFD_CLOEXEC)
	defer unix.Close(dst)
	if err := SendFile(dst, src, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, len(data))
	unix.Pread(dst, b, 0)
	if !bytes.Equal(b, data) {
		t.Error("file copy differs")
	}
	unix.Pipe2(p[:], unix.O_CLOEXEC)
	unix.Close(p[0])
	if err := SendFile(p[1], src, int64(len(data))); err == nil || !strings.Contains(err.Error(), "reader gone") {
		t.Errorf("into a pipe with no reader: %v, want reader gone", err)
	}
	unix.Close(p[1])
}

// TestLineMerger: several writers at once, lines short and longer than
// the merger's buffer, one last line without a newline: every line comes
// out whole.
func TestLineMerger(t *testing.T) {
	var out [2]int
	unix.Pipe2(out[:], unix.O_CLOEXEC)
	m := NewLineMerger(out[1])
	var want []string
	var wg sync.WaitGroup
	for src := range 4 {
		var b bytes.Buffer
		for i := range 2000 {
			line := fmt.Sprintf("source %d line %d", src, i)
			if i%500 == 7 {
				line += strings.Repeat(fmt.Sprint(src), 300_000)
			}
			b.WriteString(line + "\n")
			want = append(want, line)
		}
		if src == 2 {
			b.WriteString("unterminated")
			want = append(want, "unterminated")
		}
		fd := feed(t, b.Bytes(), true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.Copy(fd); err != nil {
				t.Error(err)
			}
		}()
	}
	got := make(chan []byte)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 1<<16)
		for {
			n, _ := unix.Read(out[0], buf)
			if n <= 0 {
				break
			}
			b.Write(buf[:n])
		}
		got <- b.Bytes()
	}()
	wg.Wait()
	if err := m.Finish(); err != nil {
		t.Fatal(err)
	}
	unix.Close(out[1])
	b := <-got
	unix.Close(out[0])
	lines := strings.Split(string(b), "\n")
	slices.Sort(lines)
	slices.Sort(want)
	if !slices.Equal(lines, want) {
		t.Errorf("got %d lines, want %d, or some were torn", len(lines), len(want))
	}
	if !bytes.HasSuffix(b, []byte("unterminated")) {
		t.Errorf("the unterminated line is not last")
	}
}
