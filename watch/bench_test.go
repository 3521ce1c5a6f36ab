package watch

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkSaveToStart measures, for 20 saves, the time from a save (just
// before the write) to the new run's first stage started, as the stage
// itself records it (`date +%s%N`, exec'd with no shell between: its own
// exec is counted too), and reports the median and the slowest, less
// the debounce: what watch adds. SPEC's budget is 20 ms.
//
//	go test -run '^$' -bench SaveToStart -benchtime 1x ./watch/
//
// idle: the last run had ended; restart: a run was alive and is stopped
// first (its stage sleeps; SIGTERM ends it at once).
func BenchmarkSaveToStart(b *testing.B) {
	const debounce = 100 * time.Millisecond
	for _, c := range []struct{ name, flow string }{
		{"idle", "stage t = date +%s%N\n"},
		{"restart", "stage t = date +%s%N\nstage s = sleep 60\n"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				s := watchFlow(b, c.flow, Options{Debounce: debounce})
				s.waitRuns(1)
				var over []time.Duration
				for i := range 20 {
					if c.name == "idle" {
						s.waitStderr("run ended", i+1)
					}
					time.Sleep(2 * debounce) // no save of this loop runs into the next's debounce
					saved := time.Now()
					s.save(fmt.Sprintf("%s# %d\n", c.flow, i))
					s.waitRuns(i + 2)
					over = append(over, stageStart(b, s.out, i+1).Sub(saved)-debounce)
				}
				slices.Sort(over)
				median := (over[9] + over[10]) / 2
				b.ReportMetric(float64(median.Microseconds())/1000, "ms-median")
				b.ReportMetric(float64(over[19].Microseconds())/1000, "ms-max")
				b.Logf("save to first stage, less the %v debounce: median %v, fastest %v, slowest %v",
					debounce, median.Round(10*time.Microsecond), over[0].Round(10*time.Microsecond), over[19].Round(10*time.Microsecond))
			}
		})
	}
}

// stageStart is the time line n (from 0) of out says.
func stageStart(b *testing.B, out string, n int) time.Time {
	data, _ := os.ReadFile(out)
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	ns, err := strconv.ParseInt(string(lines[n]), 10, 64)
	if err != nil {
		b.Fatalf("line %d of the runs' output: %v", n, err)
	}
	return time.Unix(0, ns)
}
