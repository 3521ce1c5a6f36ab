package exec

import (
	"bufio"
	"bytes"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// TestExamples runs every examples/*.ipcflow with the real ipcflow binary
// from the repository's root, as the README does, and compares its output
// byte for byte with the bash pipeline written in the file's `# bash: `
// line.
func TestExamples(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	root := testkit.ModuleRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "examples", "*.ipcflow"))
	if len(files) < 3 {
		t.Fatalf("found %d examples, want at least 3", len(files))
	}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		t.Run(filepath.Base(f), func(t *testing.T) {
			script := bashLine(t, f)
			want := testkit.Bash(t, script, testkit.InDir(root))
			runBase := t.TempDir()
			check := testkit.LeakCheck(t, runBase)
			cmd := osexec.Command(bin, "run", rel)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if code := exitCode(t, cmd.Run()); code != 0 {
				t.Fatalf("ipcflow run %s: exit status %d\n%s", rel, code, stderr.Bytes())
			}
			if !bytes.Equal(stdout.Bytes(), want) {
				t.Errorf("ipcflow run %s printed\n%s\nbash printed\n%s", rel, stdout.Bytes(), want)
			}
			if len(want) == 0 {
				t.Errorf("the bash line printed nothing: a comparison of nothing proves nothing")
			}
			if stderr.Len() > 0 {
				t.Errorf("stderr on success: %s", stderr.Bytes())
			}
			check()
		})
	}
}

// bashLine returns the `# bash: ` line of an example.
func bashLine(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "# bash: "); ok {
			return s
		}
	}
	t.Fatalf("%s has no '# bash: ' line", path)
	return ""
}
