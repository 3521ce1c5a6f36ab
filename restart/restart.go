// Package restart decides, for a stage with a `restart` clause (SPEC 14),
// whether a copy that ended is followed by another and after how long:
// the policy (on-failure or always), the budget (max N restarts within a
// window, as systemd's StartLimitBurst/StartLimitIntervalSec and Erlang's
// restart intensity and period) and the back-off (doubled after each quick
// failure up to a cap, as Kubernetes' CrashLoopBackOff, and reset once a
// copy has lived longer than the window).
//
// It knows nothing of processes: exec's supervisor asks it at each copy's
// end (Budget.Decide) and does what it says.
package restart

import (
	"fmt"
	"time"

	"github.com/ipcflow/ipcflow/parser"
)

// Budget is one stage's restart state.
type Budget struct {
	policy   parser.Restart
	backoff  time.Duration // the next wait
	recent   []time.Time   // the restarts within the window, oldest first
	Restarts int           // restarts so far
}

// New starts the budget of a stage with policy p.
func New(p parser.Restart) *Budget {
	return &Budget{policy: p, backoff: p.Backoff}
}

// Decision is what becomes of a copy that ended.
type Decision struct {
	Restart bool          // start another copy after Wait
	Wait    time.Duration // the back-off
	// Spent: the copy would have been restarted, but Max restarts within
	// Within have been made already: the stage ends with this copy's
	// status.
	Spent bool
}

// Decide says whether a copy that started at started and ended at now,
// failed or not, is followed by another. A copy that ended because its
// reader finished (SIGPIPE, EPIPE) has nobody to write to: the caller
// does not ask.
func (b *Budget) Decide(started, now time.Time, failed bool) Decision {
	if !failed && !b.policy.Always {
		return Decision{}
	}
	if now.Sub(started) > b.policy.Within {
		// It lived long enough to count as healthy: the next failure
		// is a fresh one.
		b.backoff = b.policy.Backoff
	}
	cut := now.Add(-b.policy.Within)
	keep := 0
	for keep < len(b.recent) && !b.recent[keep].After(cut) {
		keep++
	}
	b.recent = append(b.recent[:0], b.recent[keep:]...)
	if len(b.recent) >= b.policy.Max {
		return Decision{Spent: true}
	}
	wait := b.backoff
	b.backoff = min(2*b.backoff, max(parser.MaxBackoff, b.policy.Backoff))
	b.recent = append(b.recent, now)
	b.Restarts++
	return Decision{Restart: true, Wait: wait}
}

// Describe says the budget in words, for the line that reports it spent:
// "5 within 1m0s".
func (b *Budget) Describe() string {
	return fmt.Sprintf("%d within %v", b.policy.Max, b.policy.Within)
}

// Times says "1 time" or "N times".
func Times(n int) string {
	if n == 1 {
		return "1 time"
	}
	return fmt.Sprintf("%d times", n)
}
