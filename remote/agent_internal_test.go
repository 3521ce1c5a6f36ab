package remote

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestDrainWaitsThroughKills: a signal forwarded while the stage's
// outputs drain does not end the wait on the drain at hand (it did, and
// letGo then closed channels with output in flight); the control
// session's end does.
func TestDrainWaitsThroughKills(t *testing.T) {
	events := make(chan event) // unbuffered: a send is taken only by a waiting drain
	d1, d2 := make(chan struct{}), make(chan struct{})
	a := &agent{events: events, drains: []chan struct{}{d1, d2}}
	type result struct {
		e    event
		gone bool
	}
	res := make(chan result, 1)
	go func() {
		e, gone := a.drain()
		res <- result{e, gone}
	}()
	// Each kill is taken only while drain waits; had one moved it on to
	// the next drain (and past the last), it would have returned.
	for _, d := range []chan struct{}{d1, d2} {
		for i := 0; i < 3; i++ {
			select {
			case events <- event{kill: 2}:
			case r := <-res:
				t.Fatalf("drain returned %+v with an output still draining", r)
			}
		}
		close(d)
	}
	if r := <-res; r.gone {
		t.Fatalf("drain: gone %+v; want every output drained", r.e)
	}

	// The control session gone ends the wait, drains or not.
	a = &agent{events: events, drains: []chan struct{}{make(chan struct{})}}
	go func() {
		e, gone := a.drain()
		res <- result{e, gone}
	}()
	events <- event{kill: 15}
	events <- event{gone: true, eof: true}
	if r := <-res; !r.gone || !r.e.eof {
		t.Fatalf("drain: %+v; want gone on the session's end", r)
	}
}

// TestDialAgentGivesUp: a port whose run's directory on the host is gone
// (the run ended before its agent came) stops waiting for the agent's
// socket, rather than dialling for 30 s as an orphan.
func TestDialAgentGivesUp(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ipcflow.gone")
	done := make(chan error, 1)
	go func() {
		_, err := dialAgent(filepath.Join(dir, "s1.sock"))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("dialled a socket that is not there")
		}
	case <-time.After(10 * time.Second): // a guard against the 30 s wait, not a measure
		t.Fatal("still dialling with the directory gone")
	}
}

// TestBootCleansOnSIGPIPE: the boot session removes its directory when
// nobody reads its answer (a session that ran late, once the link came
// back, with ipcflow gone): its echo met a closed stdout, and the shell
// died of SIGPIPE before its rm.
func TestBootCleansOnSIGPIPE(t *testing.T) {
	tmp := t.TempDir()
	cmd := exec.Command("sh", "-c", boot)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	hold, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	out.Close() // nobody reads the answer
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if left, _ := filepath.Glob(filepath.Join(tmp, "ipcflow.*")); len(left) > 0 {
		t.Errorf("left %q", left)
	}
}
