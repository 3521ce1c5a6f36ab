package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"

	"github.com/ipcflow/ipcflow/internal/bench"
)

// BenchCmd measures each edge type on this machine (internal/bench says
// what each figure is).
type BenchCmd struct {
	Types  []string `arg:"" optional:"" completion-predictor:"edgetype" help:"Edge types to measure (pipe, fifo, mq, shm, mmap, socket, or unix/tcp/udp for one socket kind); all by default."`
	Size   string   `default:"256MiB" help:"Bytes moved per throughput run (K/KiB, M/MiB, G/GiB: powers of 1024)."`
	Runs   int      `default:"5" help:"Runs per figure; the median is shown."`
	Rounds int      `default:"2000" help:"Round trips per latency run."`
	JSON   bool     `name:"json" help:"Print the figures as JSON."`
}

func (b *BenchCmd) Run(s *Streams) error {
	size, err := parseBytes(b.Size)
	if err != nil || size <= 0 {
		return &ExitStatus{Code: usageStatus, Msg: fmt.Sprintf("bench: --size %q: want a positive size such as 256MiB", b.Size)}
	}
	if b.Runs < 1 || b.Rounds < 1 {
		return &ExitStatus{Code: usageStatus, Msg: "bench: --runs and --rounds must be at least 1"}
	}
	if _, err := exec.LookPath("cat"); err != nil {
		return fmt.Errorf("bench: needs cat: %w", err)
	}
	rows, err := bench.Rows(b.Types)
	if err != nil {
		return &ExitStatus{Code: usageStatus, Msg: "bench: " + err.Error()}
	}
	set := bench.Settings{Size: size, Runs: b.Runs, Rounds: b.Rounds}
	var progress func(run int)
	if !b.JSON && isTerminal(s.Stderr) {
		progress = func(run int) { fmt.Fprintf(s.Stderr, "run %d of %d done\n", run, b.Runs) }
	}
	if err := bench.Measure(rows, set, progress); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if b.JSON {
		return bench.WriteJSON(s.Stdout, rows)
	}
	bench.WriteTable(s.Stdout, rows, set)
	return nil
}

// parseBytes reads a size as SPEC 4 writes them: K/KiB, M/MiB, G/GiB are
// powers of 1024, a bare number is bytes.
func parseBytes(s string) (int64, error) {
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') {
		i--
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, err
	}
	shift := map[string]uint{"": 0, "K": 10, "KiB": 10, "M": 20, "MiB": 20, "G": 30, "GiB": 30}
	sh, ok := shift[s[i:]]
	if !ok || n > (1<<62)>>sh {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n << sh, nil
}

// isTerminal says whether w is a terminal (progress lines only then).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
