package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/ipcflow/ipcflow/channels"
)

// BenchCmd measures each edge type on this machine.
//
// Throughput: `cat INPUT` writes to the edge's producer end and `cat`
// reads its consumer end into /dev/null: two ordinary processes (GNU cat
// copies with 128 KiB buffers), the channel created exactly as a run
// creates it (bridges included), INPUT being --size bytes of 80-byte lines
// in /dev/shm. The reference row is the same two cats joined by a plain
// pipe(2), with no ipcflow in between.
//
// Object: the same bytes over the type's kernel object alone, ipcflow's
// own ends on two threads and no process or bridge pipe in between
// (channels.ObjectThroughput): what the bridges could get out of it.
//
// Latency, two figures: "rtt" bounces a 64-byte message over the type's
// kernel object itself between two threads of ipcflow, each end blocking
// as the bridges do (channels.RoundTrip); "rtt via cat" sends it from
// ipcflow through the edge to a `cat` and back through a second edge of
// the same type, bridges and processes included: what a stage would see.
//
// Every figure is the median of --runs runs.
type BenchCmd struct {
	Types  []string `arg:"" optional:"" help:"Edge types to measure (pipe, fifo, mq, shm, mmap, socket, or unix/tcp/udp for one socket kind); all by default."`
	Size   string   `default:"256MiB" help:"Bytes moved per throughput run (K/KiB, M/MiB, G/GiB: powers of 1024)."`
	Runs   int      `default:"5" help:"Runs per figure; the median is shown."`
	Rounds int      `default:"2000" help:"Round trips per latency run."`
	JSON   bool     `name:"json" help:"Print the figures as JSON."`
}

// benchRow is one line of the result.
type benchRow struct {
	Type       string  `json:"type"`
	GBps       float64 `json:"throughput_gb_per_s"`
	VsPipe     float64 `json:"ratio_to_pipe"`
	ObjectGBps float64 `json:"object_gb_per_s,omitempty"`
	RTTus      float64 `json:"rtt_us,omitempty"`
	RTTViaCat  float64 `json:"rtt_via_cat_us,omitempty"`
	Lost       int64   `json:"lost_datagrams,omitempty"`
	Err        string  `json:"error,omitempty"`
	typ, kind  string
	reference  bool
	throughput float64 // bytes per second
	bps        []float64
	object     []float64 // bytes per second
	rtt        []float64 // µs
	viaCat     []float64 // µs
	failed     map[string]bool
	errs       []error
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
	rows, err := benchRows(b.Types)
	if err != nil {
		return &ExitStatus{Code: usageStatus, Msg: "bench: " + err.Error()}
	}
	input, err := benchInput(size)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer os.Remove(input)
	dir, err := os.MkdirTemp("", "ipcflow-bench-")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	env := channels.Env{RunDir: dir, Prefix: benchPrefix(), Record: func(kind, name string) error { return nil }}

	// Round robin: each run measures every row once, so that a burst of
	// load elsewhere on the machine falls on all rows alike.
	for run := range b.Runs {
		for i := range rows {
			b.measureOnce(env, &rows[i], input, size)
		}
		if f, ok := s.Stderr.(*os.File); ok && !b.JSON && term.IsTerminal(int(f.Fd())) {
			fmt.Fprintf(s.Stderr, "run %d of %d done\n", run+1, b.Runs)
		}
	}
	var pipeBps float64
	for i := range rows {
		r := &rows[i]
		r.throughput = median(r.bps)
		r.GBps = r.throughput / 1e9
		r.ObjectGBps = median(r.object) / 1e9
		r.RTTus = median(r.rtt)
		r.RTTViaCat = median(r.viaCat)
		if len(r.errs) > 0 {
			r.Err = errors.Join(r.errs...).Error()
		}
		if r.reference {
			pipeBps = r.throughput
		}
	}
	for i := range rows {
		if pipeBps > 0 {
			rows[i].VsPipe = rows[i].throughput / pipeBps
		}
	}
	if b.JSON {
		enc := json.NewEncoder(s.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(s.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "TYPE\tTHROUGHPUT\tvs PIPE\tOBJECT\tRTT\tRTT VIA CAT\t\n")
	for _, r := range rows {
		if r.Err != "" && r.throughput == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t  error: %s\n", r.Type, r.Err)
			continue
		}
		note := ""
		if r.Lost > 0 {
			note = fmt.Sprintf("  lost %d datagrams", r.Lost)
		}
		if r.Err != "" {
			note += "  " + r.Err
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%s\t%s\t%s\t%s\n", r.Type, rate(r.throughput), r.VsPipe, rate(r.ObjectGBps*1e9), us(r.RTTus), us(r.RTTViaCat), note)
	}
	tw.Flush()
	fmt.Fprintf(s.Stdout, "\n%s per run, median of %d runs; rtt: %d round trips of %d bytes.\n", iecBytes(size), b.Runs, b.Rounds, channels.RoundTripSize)
	fmt.Fprintf(s.Stdout, "Throughput and rtt via cat: between processes; object and rtt: ipcflow's own ends on the kernel object.\n")
	return nil
}

func rate(bps float64) string {
	if bps == 0 {
		return "-"
	}
	return siBytes(bps) + "/s"
}

// siBytes is n bytes in SI units, three digits at most ("1.2 GB",
// "980 MB"); iecBytes in powers of 1024 ("16 MiB"). (go-humanize did
// this, and its package init cost every start of ipcflow 0.06-0.08 ms.)
func siBytes(n float64) string { return scaled(n, 1000, "B", "kB", "MB", "GB", "TB") }

func iecBytes(n int64) string {
	return scaled(float64(n), 1024, "B", "KiB", "MiB", "GiB", "TiB")
}

func scaled(n, step float64, units ...string) string {
	i := 0
	for n >= step && i < len(units)-1 {
		n /= step
		i++
	}
	if i == 0 || n >= 10 {
		return fmt.Sprintf("%.0f %s", n, units[i])
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

func us(v float64) string {
	if v == 0 {
		return "-"
	}
	if v < 10 {
		return fmt.Sprintf("%.2f µs", v)
	}
	return fmt.Sprintf("%.0f µs", v)
}

// benchRows lists what to measure, the reference pipe first.
func benchRows(args []string) ([]benchRow, error) {
	rows := []benchRow{{Type: "pipe(2) reference", reference: true, typ: "pipe", failed: map[string]bool{}}}
	add := func(typ, kind string) {
		name := typ
		if kind != "" {
			name += " " + kind
		}
		for _, r := range rows {
			if r.Type == name {
				return
			}
		}
		rows = append(rows, benchRow{Type: name, typ: typ, kind: kind, failed: map[string]bool{}})
	}
	if len(args) == 0 {
		args = channels.Names()
	}
	for _, a := range args {
		switch {
		case a == "socket":
			for _, k := range []string{"unix", "tcp", "udp"} {
				add("socket", k)
			}
		case a == "unix" || a == "tcp" || a == "udp":
			add("socket", a)
		case slices.Contains(channels.Names(), a):
			add(a, "")
		default:
			return nil, fmt.Errorf("unknown edge type %q (known: %s, unix, tcp, udp)", a, strings.Join(channels.Names(), ", "))
		}
	}
	return rows, nil
}

// measureOnce adds one sample of each figure to r; a figure that failed
// once is not measured again.
func (b *BenchCmd) measureOnce(env channels.Env, r *benchRow, input string, size int64) {
	r.sample("bps", &r.bps, nil, func() (float64, error) {
		d, lost, err := throughput(env, r, input)
		r.Lost = max(r.Lost, lost)
		return float64(size) / d.Seconds(), err
	})
	if r.reference {
		return
	}
	r.sample("object", &r.object, channels.ErrNoObjectFigure, func() (float64, error) {
		return channels.ObjectThroughput(r.typ, r.kind, size)
	})
	r.sample("rtt", &r.rtt, channels.ErrNoRoundTrip, func() (float64, error) {
		d, err := channels.RoundTrip(r.typ, r.kind, b.Rounds)
		return float64(d) / 1e3, err
	})
	r.sample("via", &r.viaCat, nil, func() (float64, error) {
		d, err := roundTripViaCat(env, r, b.Rounds)
		return float64(d) / 1e3, err
	})
}

// sample adds one measurement of a figure to *to, unless that figure
// failed before. A type that has no such figure (an error that is none)
// is not asked again and shows "-"; any other error is reported.
func (r *benchRow) sample(what string, to *[]float64, none error, measure func() (float64, error)) {
	if r.failed[what] {
		return
	}
	v, err := measure()
	switch {
	case none != nil && errors.Is(err, none):
		r.failed[what] = true
	case err != nil:
		r.failed[what] = true
		r.errs = append(r.errs, err)
	default:
		*to = append(*to, v)
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

var benchSeq int

// openEdge opens one channel of the row's type, as a run does.
func openEdge(env channels.Env, r *benchRow) (channels.Channel, error) {
	benchSeq++
	return channels.Open(env, channels.Spec{ID: fmt.Sprintf("e%d", benchSeq), Type: r.typ, Options: channels.Options{Socket: r.kind}, Readers: 1})
}

// throughput times `cat input | EDGE | cat > /dev/null`.
func throughput(env channels.Env, r *benchRow, input string) (time.Duration, int64, error) {
	var w, rd *os.File
	var ch channels.Channel
	if r.reference {
		var err error
		if rd, w, err = channels.Pipe(0); err != nil {
			return 0, 0, err
		}
	} else {
		var err error
		if ch, err = openEdge(env, r); err != nil {
			return 0, 0, err
		}
		defer ch.Close()
		w, rd = ch.Writer(), ch.Reader(0)
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return 0, 0, err
	}
	defer null.Close()
	prod, cons := exec.Command("cat", input), exec.Command("cat")
	prod.Stdout, cons.Stdin, cons.Stdout = w, rd, null
	start := time.Now()
	perr, cerr := prod.Start(), cons.Start()
	w.Close()
	rd.Close()
	if perr == nil {
		perr = prod.Wait()
	}
	if cerr == nil {
		cerr = cons.Wait()
	}
	var werr error
	var lost int64
	if ch != nil {
		werr = ch.Wait()
		lost = ch.Stats().Lost
	}
	d := time.Since(start)
	if err := errors.Join(perr, cerr, werr); err != nil {
		return 0, 0, fmt.Errorf("throughput: %w", err)
	}
	return d, lost, nil
}

// roundTripViaCat: ipcflow -EDGE-> cat -EDGE-> ipcflow, one 64-byte line
// at a time.
func roundTripViaCat(env channels.Env, r *benchRow, rounds int) (time.Duration, error) {
	there, err := openEdge(env, r)
	if err != nil {
		return 0, err
	}
	defer there.Close()
	back, err := openEdge(env, r)
	if err != nil {
		return 0, err
	}
	defer back.Close()
	echo := exec.Command("cat")
	echo.Stdin, echo.Stdout = there.Reader(0), back.Writer()
	if err := echo.Start(); err != nil {
		return 0, err
	}
	there.Reader(0).Close()
	back.Writer().Close()
	w, rd := there.Writer(), back.Reader(0)
	// A lost udp datagram would leave ReadFull waiting: end the echo, and
	// with it the stream, if the rounds take far too long.
	watchdog := time.AfterFunc(time.Duration(rounds)*10*time.Millisecond+10*time.Second, func() { echo.Process.Kill() })
	defer watchdog.Stop()
	msg := []byte(strings.Repeat("x", channels.RoundTripSize-1) + "\n")
	buf := make([]byte, channels.RoundTripSize)
	var start time.Time
	for i := range rounds + rounds/10 {
		if i == rounds/10 {
			start = time.Now()
		}
		if _, err := w.Write(msg); err != nil {
			w.Close()
			rd.Close()
			echo.Wait()
			return 0, fmt.Errorf("round trip via cat: %w", err)
		}
		if _, err := io.ReadFull(rd, buf); err != nil {
			w.Close()
			rd.Close()
			echo.Wait()
			return 0, fmt.Errorf("round trip via cat: message lost or cut: %w", err)
		}
	}
	d := time.Since(start) / time.Duration(rounds)
	w.Close()
	io.Copy(io.Discard, rd)
	rd.Close()
	echo.Wait()
	there.Wait()
	back.Wait()
	return d, nil
}

// benchInput writes size bytes of 80-byte lines to a file in /dev/shm (or
// the temp directory), so the producer reads memory, not a disk.
func benchInput(size int64) (string, error) {
	dir := "/dev/shm"
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "ipcflow-bench-input-")
	if err != nil {
		return "", err
	}
	line := strings.Repeat("0123456789", 8)[:79] + "\n"
	block := []byte(strings.Repeat(line, (1<<20)/80+1))
	for left := size; left > 0; {
		n, err := f.Write(block[:min(int64(len(block)), left)])
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			return "", fmt.Errorf("write bench input %s: %w", f.Name(), err)
		}
		left -= int64(n)
	}
	return f.Name(), f.Close()
}

func benchPrefix() string {
	var b [8]byte
	rand.Read(b[:])
	return "ipcflow.bench" + strconv.Itoa(os.Getpid()) + hex.EncodeToString(b[:]) + "."
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
