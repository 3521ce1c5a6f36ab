package exec

import (
	"bytes"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// An edge that cannot be made when the run starts (its tcp port taken by
// someone else) is named by its place in the script, as the checks name
// one, not by its wire id (e3), which the user never wrote; status 1,
// nothing left.
func TestEdgeSetupErrorNamesThePlace(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback: %v", err)
	}
	defer ln.Close()
	bin := testkit.BuildIpcflow(t)
	script := filepath.Join(t.TempDir(), "port.ipcflow")
	os.WriteFile(script, []byte("stage a = echo hi\nstage b = cat\nstage c = cat\na -> b\nb -[socket tcp addr="+ln.Addr().String()+"]-> c\n"), 0o600)
	runBase := t.TempDir()
	check := testkit.LeakCheck(t, runBase)
	cmd := osexec.Command(bin, "run", script)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	code := exitCode(t, cmd.Run())
	want := "ipcflow: " + script + ":5:3: edge b.out -> c.in: tcp listen on " + ln.Addr().String() + ": address already in use\n"
	if code != StatusSetup || stderr.String() != want {
		t.Errorf("exit status %d, stderr %q; want %d, %q", code, stderr.String(), StatusSetup, want)
	}
	if strings.Contains(stderr.String(), "edge e2") {
		t.Errorf("the message names the wire id: %q", stderr.String())
	}
	check()
}
