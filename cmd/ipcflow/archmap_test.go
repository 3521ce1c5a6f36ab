package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestArchitectureMap holds docs/architecture.md's package map (its
// Mermaid block) to the imports of the code, so that the map shows the
// packages as they stand: every arrow there is an import here, and every
// import between the module's packages (tests left out) is an arrow there.
func TestArchitectureMap(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)```mermaid\n(.*?)```").FindSubmatch(doc)
	if block == nil {
		t.Fatal("docs/architecture.md has no mermaid block")
	}
	names := map[string]string{} // node id -> package path
	for _, m := range regexp.MustCompile(`(?m)^\s*(\w+)\["([^"]+)"\]\s*$`).FindAllSubmatch(block[1], -1) {
		names[string(m[1])] = string(m[2])
	}
	var drawn []string
	for _, m := range regexp.MustCompile(`(?m)^\s*(\w+) --> (\w+)\s*$`).FindAllSubmatch(block[1], -1) {
		drawn = append(drawn, names[string(m[1])]+" -> "+names[string(m[2])])
	}

	const module = "github.com/ipcflow/ipcflow/"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "../../...").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	var imports []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, module) {
				imports = append(imports, strings.TrimPrefix(f[0], module)+" -> "+strings.TrimPrefix(imp, module))
			}
		}
	}
	for _, a := range imports {
		if !slices.Contains(drawn, a) {
			t.Errorf("docs/architecture.md's map lacks the import %s", a)
		}
	}
	for _, a := range drawn {
		if !slices.Contains(imports, a) {
			t.Errorf("docs/architecture.md's map draws %s, which the code does not import", a)
		}
	}
}
