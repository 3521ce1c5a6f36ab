package stats

import (
	"fmt"
	"strings"
)

// The bottleneck is the stage whose own work (on a CPU, ready to run and
// waiting for one, or busy elsewhere: sleeping, a disk, a child) took the
// largest part of the run, since the others spent that time waiting on
// it: blocked writing into its full input, or reading its empty output.
// Waiting for a CPU counts as its own: on a machine with more work than
// CPUs, the stage that wants the CPU longest is still the one the others
// wait for. Unless a stage waited for a
// semaphore a quarter of the run, or about as long as that: then the
// semaphore limited the flow, and the stage that waited longest for it is
// named, with those it shares it with.
//
// The evidence names the stage's time on a CPU, its own time elsewhere,
// how often its input was full (its writer blocked writing into it) and
// its output empty (its reader blocked reading), as the samples saw them.

// minShare is the least part of the run a cause must take to be named:
// below it, no stage limited the flow (it waited on its input or output
// outside). minSamples is the fewest samples that can tell, and
// clearMargin how far ahead of the next stage the bottleneck must be:
// two stages that each worked on their own most of the run (a chain of
// equals on too few CPUs) are no one stage's fault.
const (
	minShare    = 0.2
	semShare    = 0.25
	minSamples  = 5
	clearMargin = 1.15
)

// bottleneck names what limited the flow, or says in why (for the table)
// why nothing is named.
func (r *Recorder) bottleneck(rep *Report) (b *Bottleneck, why string) {
	if rep.WallSec <= 0 || r.samples < minSamples {
		return nil, fmt.Sprintf("the run was too short to tell (%s)", plural(r.samples, "sample"))
	}
	best, bestOwn, second, secondOwn := -1, 0.0, -1, 0.0
	semStage, semAbs := -1, 0.0
	for i, s := range rep.Stages {
		part := s.WallSec / rep.WallSec
		own := (s.Share.Running + s.Share.CPUWait + s.Share.Other) * part
		switch {
		case own > bestOwn:
			second, secondOwn = best, bestOwn
			best, bestOwn = i, own
		case own > secondOwn:
			second, secondOwn = i, own
		}
		if w := s.Share.Semaphore * part; w > semAbs {
			semStage, semAbs = i, w
		}
	}
	// A stage that waited a quarter of the run for a semaphore made the
	// run that much longer, however busy the others were: serialising
	// stages is what a semaphore does, and the first place to look.
	if semStage >= 0 && semAbs >= minShare && (semAbs >= semShare || semAbs >= bestOwn*0.9) {
		return r.semBottleneck(rep, semStage), ""
	}
	if best < 0 || bestOwn < minShare {
		return nil, "no stage's own work took a fifth of the run (it waited on its input or output)"
	}
	if second >= 0 && bestOwn < secondOwn*clearMargin {
		return nil, fmt.Sprintf("no single stage: %s and %s each worked on their own %s and %s of the run",
			rep.Stages[best].Name, rep.Stages[second].Name, pct(bestOwn), pct(secondOwn))
	}
	s := rep.Stages[best]
	var ev []string
	ev = append(ev, fmt.Sprintf("on CPU %s", pct(s.Share.Running)))
	if s.Share.CPUWait >= 0.1 {
		ev = append(ev, fmt.Sprintf("waiting for a CPU %s (the machine is busier than its CPUs)", pct(s.Share.CPUWait)))
	}
	if s.Share.Other >= 0.1 {
		ev = append(ev, fmt.Sprintf("busy elsewhere %s (sleep, disk, a child)", pct(s.Share.Other)))
	}
	if f, id := r.inputFull(best); f >= 0.1 {
		ev = append(ev, fmt.Sprintf("its input %s full %s of the time", id, pct(f)))
	}
	if e, id := r.outputEmpty(best); e >= 0.1 {
		ev = append(ev, fmt.Sprintf("its output %s empty %s of the time", id, pct(e)))
	}
	return &Bottleneck{Stage: s.Name, Evidence: strings.Join(ev, ", ")}, ""
}

// semBottleneck names the semaphore stage i waited for.
func (r *Recorder) semBottleneck(rep *Report, i int) *Bottleneck {
	st := r.stages[i]
	var holders []string
	for j, o := range r.stages {
		if j == i {
			continue
		}
		for _, u := range o.spec.Uses {
			for _, v := range st.spec.Uses {
				if u == v {
					holders = append(holders, o.spec.Name)
				}
			}
		}
	}
	sem := strings.Join(st.spec.Uses, ", ")
	ev := fmt.Sprintf("waiting for semaphore %s %s of its life", sem, pct(rep.Stages[i].Share.Semaphore))
	if len(holders) > 0 {
		ev += " (shared with " + strings.Join(dedup(holders), ", ") + ")"
	}
	return &Bottleneck{Stage: st.spec.Name, Semaphore: sem, Evidence: ev}
}

// inputFull is the largest share of samples in which the writer of one
// of stage i's input edges was blocked writing into it.
func (r *Recorder) inputFull(i int) (float64, string) {
	best, id := 0.0, ""
	for _, e := range r.edges {
		if e.spec.Consumer != i {
			continue
		}
		f := ratio(e.full, e.writerN)
		f = max(f, ratio(e.fullN, e.fillN))
		if f > best {
			best, id = f, e.spec.ID
		}
	}
	return best, id
}

// outputEmpty is the largest share of samples in which the reader of one
// of stage i's output edges was blocked reading from it.
func (r *Recorder) outputEmpty(i int) (float64, string) {
	best, id := 0.0, ""
	for _, e := range r.edges {
		if e.spec.Producer != i {
			continue
		}
		f := max(ratio(e.empty, e.readerN), ratio(e.emptyN, e.fillN))
		if f > best {
			best, id = f, e.spec.ID
		}
	}
	return best, id
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func pct(f float64) string { return fmt.Sprintf("%.0f%%", f*100) }

func dedup(xs []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
