// Package bench measures the edge types on this machine, for `ipcflow
// bench`: throughput between two cats through a channel opened as a run
// opens it, the same bytes over the kernel object alone (objectrate.go),
// and round trips over the object and through a cat (latency.go).
//
// Throughput: `cat INPUT` writes to the edge's producer end and `cat`
// reads its consumer end into /dev/null: two ordinary processes (GNU cat
// copies with 128 KiB buffers), the channel created exactly as a run
// creates it (bridges included), INPUT being Settings.Size bytes of 80-byte lines
// in /dev/shm. The reference row is the same two cats joined by a plain
// pipe(2), with no ipcflow in between.
//
// Object: the same bytes over the type's kernel object alone, ipcflow's
// own ends on two threads and no process or bridge pipe in between
// (ObjectThroughput): what the bridges could get out of it.
//
// Latency, two figures: "rtt" bounces a 64-byte message over the type's
// kernel object itself between two threads of ipcflow, each end blocking
// as the bridges do (RoundTrip); "rtt via cat" sends it from
// ipcflow through the edge to a `cat` and back through a second edge of
// the same type, bridges and processes included: what a stage would see.
//
// Every figure is the median of Settings.Runs runs.
package bench

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

	"github.com/ipcflow/ipcflow/budget"
	"github.com/ipcflow/ipcflow/channels"
)

// Settings are how much to move and how often.
type Settings struct {
	Size   int64 // bytes per throughput run
	Runs   int   // runs per figure; the median is shown
	Rounds int   // round trips per latency run
}

// Row is one line of the result, one edge type (or socket kind).
type Row struct {
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

// Measure measures every row: each figure s.Runs times, round robin (each
// run measures every row once, so that a burst of load elsewhere on the
// machine falls on all rows alike), then the medians. progress, if not
// nil, hears of each run done.
func Measure(rows []Row, s Settings, progress func(run int)) error {
	input, err := benchInput(s.Size)
	if err != nil {
		return err
	}
	defer os.Remove(input)
	dir, err := os.MkdirTemp("", "ipcflow-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	env := channels.Env{RunDir: dir, Prefix: benchPrefix(), Record: func(kind, name string) error { return nil }}

	for run := range s.Runs {
		for i := range rows {
			measureOnce(env, &rows[i], input, s.Size, s.Rounds)
		}
		if progress != nil {
			progress(run + 1)
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
	return nil
}

// WriteJSON prints the rows as JSON.
func WriteJSON(w io.Writer, rows []Row) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}

// WriteTable prints the rows as a table, and what the figures mean.
func WriteTable(w io.Writer, rows []Row, s Settings) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
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
	fmt.Fprintf(w, "\n%s per run, median of %d runs; rtt: %d round trips of %d bytes.\n", iecBytes(s.Size), s.Runs, s.Rounds, RoundTripSize)
	fmt.Fprintf(w, "Throughput and rtt via cat: between processes; object and rtt: ipcflow's own ends on the kernel object.\n")
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

// Rows lists what to measure, the reference pipe first.
func Rows(args []string) ([]Row, error) {
	rows := []Row{{Type: "pipe(2) reference", reference: true, typ: "pipe", failed: map[string]bool{}}}
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
		rows = append(rows, Row{Type: name, typ: typ, kind: kind, failed: map[string]bool{}})
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
func measureOnce(env channels.Env, r *Row, input string, size int64, rounds int) {
	r.sample("bps", &r.bps, nil, func() (float64, error) {
		d, lost, err := throughput(env, r, input)
		r.Lost = max(r.Lost, lost)
		return float64(size) / d.Seconds(), err
	})
	if r.reference {
		return
	}
	r.sample("object", &r.object, ErrNoObjectFigure, func() (float64, error) {
		return ObjectThroughput(r.typ, r.kind, size)
	})
	r.sample("rtt", &r.rtt, ErrNoRoundTrip, func() (float64, error) {
		d, err := RoundTrip(r.typ, r.kind, rounds)
		return float64(d) / 1e3, err
	})
	r.sample("via", &r.viaCat, nil, func() (float64, error) {
		d, err := roundTripViaCat(env, r, rounds)
		return float64(d) / 1e3, err
	})
}

// sample adds one measurement of a figure to *to, unless that figure
// failed before. A type that has no such figure (an error that is none)
// is not asked again and shows "-"; any other error is reported.
func (r *Row) sample(what string, to *[]float64, none error, measure func() (float64, error)) {
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
func openEdge(env channels.Env, r *Row) (channels.Channel, error) {
	benchSeq++
	return channels.Open(env, channels.Spec{ID: fmt.Sprintf("e%d", benchSeq), Type: r.typ, Options: channels.Options{Socket: r.kind}, Readers: 1})
}

// throughput times `cat input | EDGE | cat > /dev/null`.
func throughput(env channels.Env, r *Row, input string) (time.Duration, int64, error) {
	var w, rd *os.File
	var ch channels.Channel
	if r.reference {
		var err error
		if rd, w, err = budget.Pipe(0); err != nil {
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
func roundTripViaCat(env channels.Env, r *Row, rounds int) (time.Duration, error) {
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
	msg := []byte(strings.Repeat("x", RoundTripSize-1) + "\n")
	buf := make([]byte, RoundTripSize)
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
