package exec

import (
	"bytes"
	"os"
	osexec "os/exec"
	"path/filepath"
	"testing"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// IPCFLOW_SCRIPT_DIR is the script's own directory, absolute, in params,
// envs and every stage's environment, whatever the working directory and
// whatever value the caller's environment had (SPEC 2). A new user's
// trial found it empty everywhere: `param LOG = "$IPCFLOW_SCRIPT_DIR/app.log"`
// read /app.log.
func TestScriptDirIsGiven(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "data.txt"), []byte("found\n"), 0o600)
	script := filepath.Join(dir, "f.ipcflow")
	os.WriteFile(script, []byte(`param P = "$IPCFLOW_SCRIPT_DIR/data.txt"
env E = "$IPCFLOW_SCRIPT_DIR"
stage a = cat "$P"; [ "$E" = "$IPCFLOW_SCRIPT_DIR" ] && echo same
`), 0o600)
	elsewhere := t.TempDir()
	rel, err := filepath.Rel(elsewhere, script)
	if err != nil {
		t.Fatal(err)
	}
	cmd := osexec.Command(bin, "run", rel)
	cmd.Dir = elsewhere
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+t.TempDir(), "IPCFLOW_SCRIPT_DIR=/somewhere/else")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if code := exitCode(t, cmd.Run()); code != 0 || stdout.String() != "found\nsame\n" {
		t.Fatalf("exit status %d, stdout %q, want 0 and \"found\\nsame\\n\"; stderr:\n%s", code, stdout.Bytes(), stderr.Bytes())
	}
}
