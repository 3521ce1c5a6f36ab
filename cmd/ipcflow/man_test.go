package main

import (
	"bytes"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// manPageFile writes `ipcflow man`'s page to a file and returns its path.
func manPageFile(t *testing.T) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := Main([]string{"man"}, nil, &out, &errb); code != 0 || errb.Len() > 0 {
		t.Fatalf("ipcflow man: status %d, stderr %q", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), ".TH IPCFLOW 1 ") {
		t.Fatalf("not a man page:\n%.200s", out.String())
	}
	for i, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "'") {
			t.Errorf("line %d starts with an unescaped ': %q", i+1, l)
		}
	}
	p := filepath.Join(t.TempDir(), "ipcflow.1")
	if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// groff reads the page with every warning on and finds nothing to say.
func TestManPageGroffWarnings(t *testing.T) {
	page := manPageFile(t)
	if _, err := osexec.LookPath("groff"); err != nil {
		t.Skip("groff is not installed (apt-get install groff): the page is not checked for roff warnings")
	}
	var errb bytes.Buffer
	cmd := osexec.Command("groff", "-man", "-ww", "-z", page)
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil || errb.Len() > 0 {
		t.Fatalf("groff -man -ww -z: %v\n%s", err, errb.String())
	}
}

// man -l shows the page without a warning, and it holds every command,
// argument, flag, default and variable of kong's model: the list is made
// from the model, not written here.
func TestManPageHasTheWholeCommandLine(t *testing.T) {
	page := manPageFile(t)
	if _, err := osexec.LookPath("man"); err != nil {
		t.Skip("man is not installed (apt-get install man-db groff): the page is not rendered")
	}
	var out, errb bytes.Buffer
	cmd := osexec.Command("man", "-l", page)
	cmd.Env = append(os.Environ(), "MANWIDTH=2000", "MANPAGER=cat", "PAGER=cat", "LC_ALL=C.UTF-8")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || errb.Len() > 0 {
		t.Fatalf("man -l: %v\n%s", err, errb.String())
	}
	// Bold and underline by overstrike; the dashes groff may draw.
	text := regexp.MustCompile(".\b").ReplaceAllString(out.String(), "")
	text = strings.NewReplacer("\u2010", "-", "\u2212", "-", "\u2011", "-").Replace(text)

	k, err := newKong(&CLI{}, &out, &errb, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			if f.Hidden {
				continue
			}
			want = append(want, "--"+f.Name)
			if f.Short != 0 {
				want = append(want, "-"+string(f.Short)+", --"+f.Name)
			}
			if f.HasDefault && f.Default != "" {
				want = append(want, "Default: "+f.Default)
			}
			want = append(want, f.Envs...)
		}
		for _, a := range n.Positional {
			want = append(want, strings.ToUpper(a.Name))
		}
		for _, c := range n.Children {
			if !c.Hidden {
				want = append(want, "ipcflow "+c.Summary())
				walk(c)
			}
		}
	}
	walk(k.Model.Node)
	if len(want) < 40 {
		t.Fatalf("only %d things to look for: the model walk is broken", len(want))
	}
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("the page lacks %q", w)
		}
	}
	for _, section := range []string{"ENVIRONMENT", "EXIT STATUS", "FILES", "EXAMPLES", "IPCFLOW_SCRIPT_DIR", "NO_COLOR", "124", "127"} {
		if !strings.Contains(text, section) {
			t.Errorf("the page lacks %q", section)
		}
	}
}

// Text that roff would take for a request is escaped: a line of help
// that starts with ' or . stays text, and % is not a format verb.
func TestManEscapes(t *testing.T) {
	m := man{newDoc()}
	m.text("'quoted at the start\n.dot at the start\n100% sure")
	got := m.String()
	for _, w := range []string{`\&'quoted`, `\&.dot`, `100% sure`} {
		if !strings.Contains(got, w) {
			t.Errorf("%q not in\n%s", w, got)
		}
	}
}
