package restart

import (
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/parser"
)

func policy(always bool, max int, within, backoff time.Duration) parser.Restart {
	return parser.Restart{Always: always, Max: max, Within: within, Backoff: backoff}
}

func TestOnFailureRestartsOnlyFailures(t *testing.T) {
	b := New(policy(false, 5, time.Minute, 10*time.Millisecond))
	t0 := time.Now()
	if d := b.Decide(t0, t0.Add(time.Millisecond), false); d.Restart || d.Spent {
		t.Fatalf("a copy that succeeded was restarted under on-failure: %+v", d)
	}
	if d := b.Decide(t0, t0.Add(time.Millisecond), true); !d.Restart || d.Wait != 10*time.Millisecond {
		t.Fatalf("a failure: %+v, want a restart after 10ms", d)
	}
}

func TestAlwaysRestartsSuccessToo(t *testing.T) {
	b := New(policy(true, 5, time.Minute, 10*time.Millisecond))
	t0 := time.Now()
	if d := b.Decide(t0, t0.Add(time.Millisecond), false); !d.Restart {
		t.Fatalf("always: a copy that exited 0 was not restarted: %+v", d)
	}
}

// max 2: the third quick failure spends the budget (3 runs in all).
func TestBudgetSpent(t *testing.T) {
	b := New(policy(false, 2, time.Minute, time.Millisecond))
	now := time.Now()
	var got []Decision
	for range 3 {
		got = append(got, b.Decide(now, now, true))
		now = now.Add(time.Millisecond)
	}
	if !got[0].Restart || !got[1].Restart || got[2].Restart || !got[2].Spent || b.Restarts != 2 {
		t.Fatalf("decisions %+v, restarts %d: want restart, restart, spent, 2", got, b.Restarts)
	}
}

// Restarts older than the window no longer count.
func TestBudgetWindowSlides(t *testing.T) {
	b := New(policy(false, 2, time.Second, time.Millisecond))
	now := time.Now()
	b.Decide(now, now, true)
	b.Decide(now, now, true)
	later := now.Add(2 * time.Second)
	if d := b.Decide(later, later, true); !d.Restart {
		t.Fatalf("restarts a window ago still counted: %+v", d)
	}
}

// The back-off doubles after each quick failure, up to 30s, and starts
// over after a copy that lived longer than the window.
func TestBackoffDoublesAndResets(t *testing.T) {
	b := New(policy(false, 1000, time.Minute, time.Second))
	now := time.Now()
	var waits []time.Duration
	for range 7 {
		d := b.Decide(now, now.Add(time.Millisecond), true)
		waits = append(waits, d.Wait)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i, w := range want {
		if waits[i] != w*time.Second {
			t.Fatalf("waits %v, want %v seconds", waits, want)
		}
	}
	long := now.Add(2 * time.Minute)
	if d := b.Decide(now, long, true); d.Wait != time.Second {
		t.Fatalf("after a copy that lived 2m (window 1m) the wait is %v, want 1s again", d.Wait)
	}
}

// A first back-off above the cap is kept, not cut to 30s.
func TestBackoffAboveCap(t *testing.T) {
	b := New(policy(false, 10, time.Hour, time.Minute))
	now := time.Now()
	b.Decide(now, now, true)
	if d := b.Decide(now, now, true); d.Wait != time.Minute {
		t.Fatalf("wait %v, want the given 1m", d.Wait)
	}
}
