package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// galleryExamples lists every flow under examples/ (recursively), as paths
// relative to the repository's root, with its name in docs/gallery/
// (native/shout.ipcflow is native-shout), as docs/gallery/make.sh names them.
func galleryExamples(t *testing.T, root string) map[string]string {
	t.Helper()
	ex := map[string]string{}
	err := filepath.WalkDir(filepath.Join(root, "examples"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".ipcflow") {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		under := strings.TrimSuffix(strings.TrimPrefix(filepath.ToSlash(rel), "examples/"), ".ipcflow")
		ex[filepath.ToSlash(rel)] = strings.ReplaceAll(under, "/", "-")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) < 4 {
		t.Fatalf("found %d examples under examples/, want at least 4", len(ex))
	}
	return ex
}

var galleryHash = regexp.MustCompile(`<!-- ipcflow-gallery dot sha256 ([0-9a-f]{64}) -->`)

// TestGallery fails when a picture in docs/gallery/ is out of date: the
// .dot recorded beside each SVG must be what `ipcflow graph` prints now,
// and the SVG must have been drawn from that .dot (make.sh writes its
// sha256 into the SVG). Comparing ipcflow's own dot text, not Graphviz's
// SVG, keeps the check from failing on another Graphviz version. Where dot
// is installed, each recorded .dot must also still render. docs/gallery.md
// must show each example's current script and picture.
func TestGallery(t *testing.T) {
	root := testkit.ModuleRoot(t)
	t.Chdir(root) // graph names the digraph by the path given, as make.sh gives it
	page, err := os.ReadFile("docs/gallery.md")
	if err != nil {
		t.Fatal(err)
	}
	dotBin, dotErr := osexec.LookPath("dot")
	if dotErr != nil {
		t.Log("graphviz is not installed: the recorded .dot files are not rendered again")
	}
	const fix = "; regenerate with docs/gallery/make.sh"
	for rel, name := range galleryExamples(t, root) {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main([]string{"graph", rel}, nil, &stdout, &stderr); code != 0 {
				t.Fatalf("ipcflow graph %s: status %d: %s", rel, code, stderr.Bytes())
			}
			dotFile := filepath.Join("docs", "gallery", name+".dot")
			recorded, err := os.ReadFile(dotFile)
			if err != nil {
				t.Fatalf("%s has no picture (%v)%s", rel, err, fix)
			}
			if !bytes.Equal(recorded, stdout.Bytes()) {
				t.Errorf("%s is out of date: ipcflow graph %s prints another graph%s", dotFile, rel, fix)
			}
			svg, err := os.ReadFile(filepath.Join("docs", "gallery", name+".svg"))
			if err != nil {
				t.Fatalf("%s has no SVG (%v)%s", rel, err, fix)
			}
			sum := sha256.Sum256(recorded)
			m := galleryHash.FindSubmatch(svg)
			if m == nil || string(m[1]) != hex.EncodeToString(sum[:]) {
				t.Errorf("docs/gallery/%s.svg was not drawn from %s%s", name, dotFile, fix)
			}
			if dotErr == nil {
				cmd := osexec.Command(dotBin, "-Tsvg", dotFile)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("dot -Tsvg %s: %v\n%.500s", dotFile, err, out)
				}
			}
			script, err := os.ReadFile(rel)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(page, []byte("```\n"+string(script)+"```\n")) {
				t.Errorf("docs/gallery.md does not show the current %s%s", rel, fix)
			}
			if !bytes.Contains(page, []byte("(gallery/"+name+".svg)")) {
				t.Errorf("docs/gallery.md does not show gallery/%s.svg%s", name, fix)
			}
		})
	}
}

// TestExamplesFormatted fails when an example is not in `ipcflow fmt`'s
// layout: the examples are what people copy.
func TestExamplesFormatted(t *testing.T) {
	root := testkit.ModuleRoot(t)
	for rel := range galleryExamples(t, root) {
		var stdout, stderr bytes.Buffer
		if code := Main([]string{"fmt", "-d", filepath.Join(root, rel)}, nil, &stdout, &stderr); code != 0 {
			t.Errorf("%s is not in fmt's layout (ipcflow fmt -w %s), status %d:\n%s%s", rel, rel, code, stdout.Bytes(), stderr.Bytes())
		}
	}
}
