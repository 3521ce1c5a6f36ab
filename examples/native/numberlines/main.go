// Numberlines is a native ipcflow stage in Go: it reads its port in (an
// mq, shm or mmap edge, through package native) and prints each line to
// its standard output numbered as `cat -n` numbers it.
//
// Build (docs/native.md): go build -o numberlines ./examples/native/numberlines
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ipcflow/ipcflow/native"
)

func main() {
	in, err := native.OpenReader("in")
	if err != nil {
		fmt.Fprintln(os.Stderr, "numberlines:", err)
		os.Exit(1)
	}
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<30)
	sc.Split(scanLines)
	n := 0
	for sc.Scan() {
		n++
		fmt.Fprintf(out, "%6d\t%s", n, sc.Bytes())
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		out.Flush()
		fmt.Fprintln(os.Stderr, "numberlines:", err)
		os.Exit(1)
	}
	in.Close()
	if err := out.Flush(); err != nil {
		os.Exit(1)
	}
}

// scanLines is bufio.ScanLines keeping each line's newline, so that a
// last line without one is printed without one, as cat -n does.
func scanLines(data []byte, atEOF bool) (int, []byte, error) {
	for i, c := range data {
		if c == '\n' {
			return i + 1, data[:i+1], nil
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
