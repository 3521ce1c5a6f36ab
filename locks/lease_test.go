package locks

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func init() {
	// lease-hold SOCKET SEM: take a lease, say "held" on stdout, and keep it
	// until killed.
	moreHelpers["lease-hold"] = func(args []string) int {
		if _, err := AcquireLease(context.Background(), args[0], args[1]); err != nil {
			os.Stderr.WriteString("helper lease-hold: " + err.Error() + "\n")
			return 1
		}
		os.Stdout.WriteString("held\n")
		select {}
	}
	// lease-try SOCKET SEM: take a lease and give it back; print the error.
	moreHelpers["lease-try"] = func(args []string) int {
		release, err := AcquireLease(context.Background(), args[0], args[1])
		if err != nil {
			os.Stdout.WriteString(err.Error() + "\n")
			return 1
		}
		release()
		return 0
	}
}

// A process of another user that reaches the socket is refused: the run
// directory's mode is the first guard, this is the second.
func TestLeaseRejectsOtherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to start a client as another user")
	}
	sem := newTestSem(t, 1)
	dir, err := os.MkdirTemp("", "ipcflow-lease-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "lock.sock")
	srv, err := ServeLeases(sock, map[string]*Sem{"db": sem})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	os.Chmod(sock, 0o666)
	// The test binary sits in a directory only we may enter: give the
	// other user a copy.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "locks.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}

	cmd := helperCmd(t, "lease-try", sock, "db")
	cmd.Path, cmd.Args[0], cmd.Stderr = bin, bin, nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	t.Logf("as uid 65534: %v: %s", err, out)
	if err == nil || !strings.Contains(string(out), "not the run's user") {
		t.Errorf("lease as uid 65534: %v, %q; want a refusal", err, out)
	}
	if sem.Value() != 1 {
		t.Errorf("value after the refusal = %d, want 1", sem.Value())
	}
	// The same helper as our own user gets the lease (so the refusal above
	// is the uid check, not some other failure).
	if out, err := helperCmd(t, "lease-try", sock, "db").Output(); err != nil {
		t.Errorf("lease as our user: %v %q", err, out)
	}
}

// startLeases serves leases on a count-n semaphore named "db".
func startLeases(t *testing.T, n uint32) (*LeaseServer, *Sem) {
	t.Helper()
	sem := newTestSem(t, n)
	srv, err := ServeLeases(filepath.Join(t.TempDir(), "lock.sock"), map[string]*Sem{"db": sem})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, sem
}

func TestLeaseAcquireRelease(t *testing.T) {
	srv, sem := startLeases(t, 2)
	ctx := context.Background()
	// By script name, by another case, by POSIX name.
	r1, err := AcquireLease(ctx, srv.Path(), "db")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := AcquireLease(ctx, srv.Path(), "DB")
	if err != nil {
		t.Fatal(err)
	}
	if sem.Value() != 0 {
		t.Fatalf("value with two leases held = %d, want 0", sem.Value())
	}
	if held, _ := srv.LeaseCounts(); held["db"] != 2 {
		t.Errorf("held = %v", held)
	}

	// A third waits; with a deadline it gives up, and the server stops
	// waiting on its behalf (no unit taken for a ghost).
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := AcquireLease(tctx, srv.Path(), sem.Name()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third lease: %v, want DeadlineExceeded", err)
	}
	waitFor(t, func() bool { _, w := srv.LeaseCounts(); return w["db"] == 0 })
	if sem.waiters() != 0 {
		t.Errorf("nwaiters after the client gave up = %d", sem.waiters())
	}

	done := make(chan error)
	go func() {
		r3, err := AcquireLease(ctx, srv.Path(), "db")
		if err == nil {
			err = r3()
		}
		done <- err
	}()
	waitFor(t, func() bool { _, w := srv.LeaseCounts(); return w["db"] == 1 })
	if err := r1(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r1() // a second release is harmless
	r2()
	waitFor(t, func() bool { return sem.Value() == 2 })
}

func TestLeaseSocketPathTooLong(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("x", 120))
	if _, err := ServeLeases(long, nil); err == nil || !strings.Contains(err.Error(), "a unix socket allows") {
		t.Errorf("ServeLeases on a %d-byte path: %v", len(long), err)
	}
}

func TestLeaseUnknownAndBadRequest(t *testing.T) {
	srv, _ := startLeases(t, 1)
	if _, err := AcquireLease(context.Background(), srv.Path(), "nosuch"); !errors.Is(err, ErrUnknownSem) {
		t.Errorf("unknown sem: %v, want ErrUnknownSem", err)
	}
	c, err := net.Dial("unix", srv.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("take db\n"))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "error bad request") {
		t.Errorf("reply to a bad request: %q", line)
	}
	if _, err := AcquireLease(context.Background(), filepath.Join(t.TempDir(), "none"), "db"); !errors.Is(err, ErrNoLeaseServer) {
		t.Errorf("lease from a missing server: %v, want ErrNoLeaseServer", err)
	}
}

// A holder killed with SIGKILL never says release: the kernel closes its
// connection and the server gives the unit back, so the next taker gets it.
func TestLeaseHolderKilled(t *testing.T) {
	srv, sem := startLeases(t, 1)
	holder := helperCmd(t, "lease-hold", srv.Path(), "db")
	out, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "held\n" {
		holder.Process.Kill()
		t.Fatalf("holder said %q", line)
	}
	if sem.Value() != 0 {
		t.Fatalf("value while held = %d", sem.Value())
	}
	next := make(chan error, 1)
	go func() {
		r, err := AcquireLease(context.Background(), srv.Path(), "db")
		if err == nil {
			err = r()
		}
		next <- err
	}()
	waitFor(t, func() bool { _, w := srv.LeaseCounts(); return w["db"] == 1 })
	holder.Process.Kill()
	holder.Wait()
	select {
	case err := <-next:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the unit of a killed holder was never given back")
	}
	waitFor(t, func() bool { return sem.Value() == 1 })
}

// Closing the server gives back held units, ends waits with a clear reply,
// and removes the socket.
func TestLeaseServerClose(t *testing.T) {
	sem := newTestSem(t, 1)
	path := filepath.Join(t.TempDir(), "lock.sock")
	srv, err := ServeLeases(path, map[string]*Sem{"db": sem})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AcquireLease(context.Background(), path, "db"); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := AcquireLease(context.Background(), path, "db")
		waiting <- err
	}()
	waitFor(t, func() bool { _, w := srv.LeaseCounts(); return w["db"] == 1 })
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := <-waiting; err == nil || !strings.Contains(err.Error(), "run is ending") {
		t.Errorf("waiting client after Close: %v", err)
	}
	if sem.Value() != 1 || sem.waiters() != 0 {
		t.Errorf("after Close: value %d nwaiters %d, want 1 0", sem.Value(), sem.waiters())
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after Close: %v", err)
	}
}
