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
// and compares its output byte for byte with the bash pipeline written in
// the file's `# bash: ` line (run from the repository's root). Each example
// runs from three places: the root, as the README does; its own directory,
// as `cd examples && ipcflow run wordfreq.ipcflow`; and an unrelated
// directory by its absolute path, as a #! script called from anywhere. The
// examples find their data through $IPCFLOW_SCRIPT_DIR, so all three print
// the same.
func TestExamples(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	root := testkit.ModuleRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "examples", "*.ipcflow"))
	if len(files) < 3 {
		t.Fatalf("found %d examples, want at least 3", len(files))
	}
	elsewhere := t.TempDir()
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		t.Run(filepath.Base(f), func(t *testing.T) {
			script := bashLine(t, f)
			want := testkit.Bash(t, script, testkit.InDir(root))
			if len(want) == 0 {
				t.Fatalf("the bash line printed nothing: a comparison of nothing proves nothing")
			}
			for _, from := range []struct{ dir, file string }{
				{root, rel},
				{filepath.Dir(f), filepath.Base(f)},
				{elsewhere, f},
			} {
				runBase := t.TempDir()
				check := testkit.LeakCheck(t, runBase)
				cmd := osexec.Command(bin, "run", from.file)
				cmd.Dir = from.dir
				cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase)
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				if code := exitCode(t, cmd.Run()); code != 0 {
					t.Fatalf("in %s, ipcflow run %s: exit status %d\n%s", from.dir, from.file, code, stderr.Bytes())
				}
				if !bytes.Equal(stdout.Bytes(), want) {
					t.Errorf("in %s, ipcflow run %s printed\n%s\nbash printed\n%s", from.dir, from.file, stdout.Bytes(), want)
				}
				if got, want := stderr.String(), stderrLines(t, f); got != want {
					t.Errorf("in %s, ipcflow run %s: stderr %q, want %q (its '# stderr: ' lines)", from.dir, from.file, got, want)
				}
				check()
			}
		})
	}
}

// stderrLines returns what an example prints on stderr: its `# stderr: `
// lines (a stage that crashes and restarts says so); none, for most.
func stderrLines(t *testing.T, path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, l := range strings.Split(string(data), "\n") {
		if s, ok := strings.CutPrefix(l, "# stderr: "); ok {
			b.WriteString(s + "\n")
		}
	}
	return b.String()
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
