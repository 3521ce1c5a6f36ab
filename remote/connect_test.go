package remote_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/remote"
)

// TestConnectRecordFails: when the manifest can't take a host's paths,
// Connect fails with that error having started nothing for any host (it
// returned with the earlier hosts' masters starting, and their
// directories on the hosts were left). The ssh here only logs that it ran.
func TestConnectRecordFails(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "ssh.log")
	ssh := filepath.Join(dir, "ssh")
	if err := os.WriteFile(ssh, []byte("#!/bin/sh\necho \"$*\" >> '"+log+"'\nexit 255\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv(remote.SSHEnv, ssh)
	full := errors.New("manifest full")
	var recorded []string
	record := func(kind, name string) error {
		recorded = append(recorded, name)
		if len(recorded) < 3 { // h1's two paths pass, h2's first fails
			return nil
		}
		// Give a start that has begun for h1 the time to show: the
		// wait bounds only how surely the old fault is caught, not the
		// test's verdict, which holds whatever the timing.
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(log); err == nil {
				break
			}
		}
		return full
	}
	h, err := remote.Connect([]string{"h1", "h2"}, dir, record)
	if !errors.Is(err, full) || h != nil {
		t.Fatalf("Connect: %v, %v; want the record's error and no hosts", h, err)
	}
	if b, err := os.ReadFile(log); err == nil {
		t.Errorf("ssh ran though Connect failed before its start:\n%s", b)
	}
	if len(recorded) != 3 {
		t.Errorf("recorded %q; want h1's two paths and h2's first", recorded)
	}
}
