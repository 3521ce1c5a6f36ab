package testkit

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportedOnlyByTests holds the package to its doc comment: no
// package of the module imports it outside its tests.
func TestImportedOnlyByTests(t *testing.T) {
	const self = "github.com/ipcflow/ipcflow/internal/testkit"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "../../...").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		for _, imp := range f[1:] {
			if imp == self {
				t.Errorf("%s imports %s outside its tests", f[0], self)
			}
		}
	}
}
