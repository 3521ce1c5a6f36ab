package remote_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/internal/testkit/sshlab"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testkit.RemoveIpcflowBuild()
	os.Exit(code)
}

// runFlow runs script with the real ipcflow, reaching lab's hosts.
func runFlow(t *testing.T, lab *sshlab.Lab, script string, stdin []byte, args ...string) (stdout, stderr []byte, code int) {
	t.Helper()
	bin := testkit.BuildIpcflow(t)
	path := filepath.Join(t.TempDir(), "flow.ipcflow")
	if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"run", path}, args...)...)
	cmd.Env = lab.Env()
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("run: %v", err)
	}
	return out.Bytes(), errb.Bytes(), code
}

func TestSmoke(t *testing.T) {
	lab := sshlab.New(t, 2)
	start := time.Now()
	out, errb, code := runFlow(t, lab, "stage a on h1 = seq 3\nstage b on h2 = tr 1 x\na -> b\n", nil)
	t.Logf("took %v", time.Since(start))
	if code != 0 || string(out) != "x\n2\n3\n" {
		t.Fatalf("code %d, out %q, err %s", code, out, errb)
	}
	sshlab.WaitNoLeftovers(t, 10*time.Second)
	_ = strings.TrimSpace
}
