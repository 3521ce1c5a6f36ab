package parser

// The clauses of supervision and isolation (SPEC 14):
//
//	restart = 'restart' WHEN { 'max' N | 'within' DURATION | 'backoff' DURATION }
//	WHEN    = 'on-failure' | 'always'
//	limit   = 'limit' RESOURCE '=' VALUE { ',' RESOURCE '=' VALUE }
//
// Their words (on-failure, 64MiB, 0.5, 10ms) are not DSL tokens, so they
// are read as raw words: a run of characters up to a blank, ',', '=' or
// the end of the line. parse.go reads them (parseRestart, parseLimit);
// resolve.go checks them (restartPolicy, limits) into Stage.Restart and
// Stage.Limits, which exec's supervisor and package isolate use.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Restart is a stage's `restart` clause, checked.
type Restart struct {
	Pos     Pos
	Always  bool          // always: also after a copy exits 0; else on-failure
	Max     int           // restarts allowed within Within
	Within  time.Duration // the window Max counts in; a copy that lived longer resets the back-off
	Backoff time.Duration // the first wait before a restart, doubled up to MaxBackoff
}

// The defaults: systemd's start limit (5 within a minute; its
// DefaultStartLimitIntervalSec is 10s, SPEC 14 says 60s), and a first
// back-off of systemd's RestartSec (100ms). The back-off doubles up to
// MaxBackoff, as Kubernetes' CrashLoopBackOff caps at 5 minutes.
const (
	DefaultRestartMax     = 5
	DefaultRestartWithin  = 60 * time.Second
	DefaultRestartBackoff = 100 * time.Millisecond
	MaxBackoff            = 30 * time.Second
)

// When says the policy as written: "on-failure" or "always".
func (r *Restart) When() string {
	if r.Always {
		return "always"
	}
	return "on-failure"
}

// Limits is a stage's `limit` clause, checked: 0 is no limit.
type Limits struct {
	Pos    Pos
	Memory int64   // bytes, with the stage's descendants
	CPU    float64 // CPUs' worth of time (0.5: half of one CPU)
	Pids   int     // processes and threads
	Files  int     // open files per process
}

// Any reports whether a limit is set.
func (l *Limits) Any() bool {
	return l != nil && (l.Memory > 0 || l.CPU > 0 || l.Pids > 0 || l.Files > 0)
}

// limitResources are the resources `limit` knows, in the order they are
// printed.
var limitResources = []string{"memory", "cpu", "pids", "files"}

var restartWhens = []string{"on-failure", "always"}

// rawWord reads the next raw word of a restart or limit clause at the
// lexer's position: it returns "" (and the position) when the line, the
// clause or the statement's '=' comes first.
func (p *parser) rawWord() (string, Pos) {
	l := p.l
	l.skipBlanks()
	start := l.pos
	for l.pos < len(l.input) && !strings.ContainsRune(" \t\r\n,=#", rune(l.input[l.pos])) {
		l.pos++
	}
	return l.input[start:l.pos], p.pos(start)
}

// resume goes back to DSL tokens after a clause read as raw words.
func (p *parser) resume() {
	p.l.start = p.l.pos
	p.next()
}

// restartOptions are the words that may follow restart's WHEN.
var restartOptions = []string{"max", "within", "backoff"}

// parseRestart parses `restart WHEN { max N | within D | backoff D }`,
// the current token being 'restart'. Values are checked by resolve.
func (p *parser) parseRestart(c *Clause, stage string) error {
	p.l.pos = p.tok.pos + len(c.Kind)
	when, pos := p.rawWord()
	if when == "" {
		p.errorf(pos, "stage %s: expected on-failure or always after 'restart'", stage)
		return errStmt
	}
	c.Args = append(c.Args, ClauseArg{Pos: pos, Name: when})
	for {
		save := p.l.pos
		key, kpos := p.rawWord()
		if key != "max" && key != "within" && key != "backoff" {
			// A misspelt option reads better as itself than as the
			// generic "expected a clause" the next word would get.
			if hint := Closest(key, restartOptions); hint != "" {
				p.errorf(kpos, "stage %s: unknown restart option %q (did you mean %q?): expected max, within or backoff", stage, key, hint)
				return errStmt
			}
			p.l.pos = save
			break
		}
		val, vpos := p.rawWord()
		if val == "" {
			p.errorf(vpos, "stage %s: expected a value after '%s'", stage, key)
			return errStmt
		}
		c.Args = append(c.Args, ClauseArg{Pos: kpos, Name: key, ValuePos: vpos, Value: val})
	}
	p.resume()
	return nil
}

// parseLimit parses `limit RESOURCE=VALUE { , RESOURCE=VALUE }`, the
// current token being 'limit'.
func (p *parser) parseLimit(c *Clause, stage string) error {
	l := p.l
	l.pos = p.tok.pos + len(c.Kind)
	for {
		name, pos := p.rawWord()
		if name == "" {
			p.errorf(pos, "stage %s: expected RESOURCE=VALUE after 'limit' (memory, cpu, pids, files)", stage)
			return errStmt
		}
		l.skipBlanks()
		if l.pos >= len(l.input) || l.input[l.pos] != '=' {
			p.errorf(p.pos(l.pos), "stage %s: expected '=' and a value after limit %s", stage, name)
			return errStmt
		}
		l.pos++
		val, vpos := p.rawWord()
		if val == "" {
			p.errorf(vpos, "stage %s: expected a value after limit %s=", stage, name)
			return errStmt
		}
		c.Args = append(c.Args, ClauseArg{Pos: pos, Name: name, ValuePos: vpos, Value: val})
		l.skipBlanks()
		if l.pos < len(l.input) && l.input[l.pos] == ',' {
			l.pos++
			continue
		}
		break
	}
	p.resume()
	return nil
}

// formatArgs prints a restart or limit clause's words in canonical form.
func formatArgs(b *strings.Builder, c *Clause) {
	for i, a := range c.Args {
		switch {
		case c.Kind == "limit" && i > 0:
			fmt.Fprintf(b, ", %s=%s", a.Name, a.Value)
		case c.Kind == "limit":
			fmt.Fprintf(b, " %s=%s", a.Name, a.Value)
		case a.Value == "":
			b.WriteString(" " + a.Name)
		default:
			fmt.Fprintf(b, " %s %s", a.Name, a.Value)
		}
	}
}

// restartPolicy checks a restart clause into st.Restart.
func (r *resolver) restartPolicy(st *Stage, c *Clause) {
	if st.Restart != nil {
		r.errorf(c.Pos, "restart given twice for stage %s (first at %s)", st.Name, st.Restart.Pos)
		return
	}
	rs := &Restart{Pos: c.Pos, Max: DefaultRestartMax, Within: DefaultRestartWithin, Backoff: DefaultRestartBackoff}
	st.Restart = rs
	when := c.Args[0]
	switch when.Name {
	case "on-failure":
	case "always":
		rs.Always = true
	default:
		r.errorf(when.Pos, "stage %s: unknown restart policy %q: expected on-failure or always%s", st.Name, when.Name, didYouMean(when.Name, restartWhens))
	}
	seen := map[string]Pos{}
	for _, a := range c.Args[1:] {
		if first, ok := seen[a.Name]; ok {
			r.errorf(a.Pos, "stage %s: restart %s given twice (first at %s)", st.Name, a.Name, first)
			continue
		}
		seen[a.Name] = a.Pos
		var err error
		switch a.Name {
		case "max":
			rs.Max, err = parseCount(a.Value, "restart max", 1, 1_000_000)
		case "within":
			rs.Within, err = parseDuration(a.Value)
		case "backoff":
			rs.Backoff, err = parseDuration(a.Value)
		}
		if err != nil {
			r.errorf(a.ValuePos, "stage %s: %v", st.Name, err)
		}
	}
}

// wellFormedDuration is a duration time.ParseDuration refuses only for
// its size.
var wellFormedDuration = regexp.MustCompile(`^([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$`)

// parseDuration reads a Go duration ("100ms", "1m30s") that must be more
// than zero.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		if wellFormedDuration.MatchString(s) {
			return 0, fmt.Errorf("bad duration %q: too long (at most about 2562047h)", s)
		}
		return 0, fmt.Errorf("bad duration %q: expected a number with a unit (ns, us, ms, s, m, h), as 100ms or 1m30s", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("bad duration %q: must be more than 0", s)
	}
	return d, nil
}

// minMemoryLimit is the least memory= taken: below it no program starts
// (the kernel kills the stage at once, which reads as a mystery).
const minMemoryLimit = 1 << 20

// limits checks a limit clause into st.Limits.
func (r *resolver) limits(st *Stage, c *Clause) {
	if st.Limits != nil {
		r.errorf(c.Pos, "limit given twice for stage %s (first at %s): list every resource in one", st.Name, st.Limits.Pos)
		return
	}
	lm := &Limits{Pos: c.Pos}
	st.Limits = lm
	seen := map[string]Pos{}
	for _, a := range c.Args {
		if first, ok := seen[a.Name]; ok {
			r.errorf(a.Pos, "stage %s: limit %s given twice (first at %s)", st.Name, a.Name, first)
			continue
		}
		seen[a.Name] = a.Pos
		var err error
		switch a.Name {
		case "memory":
			lm.Memory, err = ParseSize(a.Value)
			if err == nil && lm.Memory < minMemoryLimit {
				err = fmt.Errorf("%q is too little to start a program in: at least %s", a.Value, FormatSize(minMemoryLimit))
			}
		case "cpu":
			lm.CPU, err = parseFraction(a.Value)
		case "pids":
			lm.Pids, err = parseCount(a.Value, "value", 1, 1<<22)
		case "files":
			lm.Files, err = parseCount(a.Value, "value", 1, 1<<20)
		default:
			r.errorf(a.Pos, "stage %s: unknown resource %q in limit: expected memory, cpu, pids or files%s", st.Name, a.Name, didYouMean(a.Name, limitResources))
			continue
		}
		if err != nil {
			r.errorf(a.ValuePos, "stage %s: limit %s: %v", st.Name, a.Name, err)
		}
	}
}

// parseFraction reads cpu=FRACTION: CPUs' worth of time, more than 0
// (1.5 is one and a half CPUs).
func parseFraction(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || strings.ContainsAny(s, "xXeEnN+-") {
		return 0, fmt.Errorf("bad fraction %q: expected a number of CPUs, as 0.5", s)
	}
	if f <= 0 || f > 4096 {
		return 0, fmt.Errorf("bad fraction %q: must be more than 0 (and at most 4096)", s)
	}
	return f, nil
}

// restartAfter refuses `after X` where X restarts always: X never ends of
// itself, so the stage would wait for ever.
func (r *resolver) restartAfter(st *Stage) {
	for i, dep := range st.After {
		if dep.Restart != nil && dep.Restart.Always {
			r.errorf(r.info[st].afterPos[i], "stage %s is after %s, which restarts always and so never ends of itself (%s): use restart on-failure, or drop the after", st.Name, dep.Name, dep.Restart.Pos)
		}
	}
}
