package channels

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// TestMmapPathKeepsRecording: with path= the file stays after the run and
// holds exactly the stream; an existing file is refused.
func TestMmapPathKeepsRecording(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "edge.rec")
	data := []byte(strings.Repeat("recorded line\n", 100000) + "tail")
	res := runChain(t, inputFile(t, data), []hop{{"mmap", Options{Path: rec}}}, "cat")
	if !bytes.Equal(res.out, data) {
		t.Fatalf("consumer got %s", short(res.out))
	}
	got, err := os.ReadFile(rec)
	if err != nil {
		t.Fatalf("recording: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("recording holds %d bytes, want the %d of the stream", len(got), len(data))
	}
	if err := checkMmap(Options{Path: rec}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("existing recording: %v", err)
	}
	env := testEnv(t)
	if _, err := Open(env, Spec{ID: "e1", Type: "mmap", Options: Options{Path: rec}}); err == nil {
		t.Fatal("opened over an existing recording")
	}
}

// TestMmapGrowsPastSteps: a stream several growth steps long (with a small
// first step) arrives whole.
func TestMmapGrowsPastSteps(t *testing.T) {
	if testing.Short() {
		t.Skip("large stream")
	}
	producer := "head -c 200000000 /dev/zero | tr '\\0' 'q'"
	want := testkit.Bash(t, producer+" | sha256sum")
	res := runChain(t, producer, []hop{{"mmap", Options{Size: 1 << 20}}}, "sha256sum")
	if !bytes.Equal(res.out, want) {
		t.Fatalf("got %s want %s", res.out, want)
	}
}

// TestMmapWithoutSplice: where the file system cannot splice, the bridges
// copy through the mapping instead (read(2) into it, write(2) from it):
// the same bytes, a fan-out included.
func TestMmapWithoutSplice(t *testing.T) {
	mmapNoSplice = true
	defer func() { mmapNoSplice = false }()
	data := []byte(strings.Repeat("through the mapping\n", 200000) + "no newline")
	ch, err := Open(testEnv(t), Spec{ID: "e1", Type: "mmap", Options: Options{Size: 1 << 20}, Readers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	second := make(chan []byte)
	go func() {
		got, _ := io.ReadAll(ch.Reader(1))
		second <- got
	}()
	if got := pump(t, ch, data); !bytes.Equal(got, data) {
		t.Fatalf("reader 0 got %s", short(got))
	}
	if got := <-second; !bytes.Equal(got, data) {
		t.Fatalf("reader 1 got %s", short(got))
	}
	if err := ch.Wait(); err != nil {
		t.Fatal(err)
	}
	if st := ch.Stats(); st.Bytes != int64(len(data)) {
		t.Fatalf("stats: %d bytes, want %d", st.Bytes, len(data))
	}
}
