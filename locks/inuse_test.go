package locks

import (
	"bufio"
	"os"
	"syscall"
	"testing"
)

func init() {
	// "create-and-wait NAME": makes the semaphore, says "ready", and waits
	// to be killed, never closing it.
	moreHelpers["create-and-wait"] = func(args []string) int {
		if _, err := Create(args[0], 1); err != nil {
			os.Stdout.WriteString(err.Error() + "\n")
			return 1
		}
		os.Stdout.WriteString("ready\n")
		select {}
	}
}

// A semaphore is in use while the process that created it has it open,
// and not once that process is gone, however it went: that is how
// `ipcflow clean` spares a live run's semaphores it has no directory for.
func TestInUse(t *testing.T) {
	s := newTestSem(t, 1)
	if !InUse(s.Name()) {
		t.Errorf("%s not in use while its creator has it open", s.Name())
	}
	// Another opener (a stage's sem_open, ipcflow lock) holds no lock.
	o, err := Open(s.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !InUse(s.Name()) {
		t.Errorf("in use lost when another process opened it")
	}
	s.Close()
	if InUse(s.Name()) {
		t.Errorf("%s still in use after its creator closed it (another opener still has it)", s.Name())
	}
	o.Close()

	// A creator killed with SIGKILL lets go of it.
	name := testSemName(t)
	defer Unlink(name)
	cmd := helperCmd(t, "create-and-wait", name)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: %q", line)
	}
	if !InUse(name) {
		t.Errorf("%s not in use while its creator (pid %d) lives", name, cmd.Process.Pid)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if InUse(name) {
		t.Errorf("%s still in use after its creator was killed", name)
	}
	if InUse("/" + testPrefix + "no-such-sem") {
		t.Errorf("a missing semaphore is in use")
	}
}
