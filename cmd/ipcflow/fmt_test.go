package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// fmt -w writes a symlink's target and keeps the link; a file with a
// second name is written in place, so both names see the new text. It
// renamed a new file over the link, and over one name of the two.
func TestFmtWriteKeepsLinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.ipcflow")
	const src, want = "stage a=seq 3\nstage b  =  cat\na->b\n", "stage a = seq 3\nstage b = cat\na -> b\n"
	if err := os.WriteFile(real, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	link, hard := filepath.Join(dir, "link.ipcflow"), filepath.Join(dir, "hard.ipcflow")
	if err := os.Symlink("real.ipcflow", link); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(real, hard); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"fmt", "-w", link}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("fmt -w: status %d, %s", code, stderr.Bytes())
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link is no longer a link: %v", err)
	}
	for _, p := range []string{real, hard} {
		if b, _ := os.ReadFile(p); string(b) != want {
			t.Errorf("%s: %q, want %q", filepath.Base(p), b, want)
		}
	}
}

// fmt says so when it cannot write its result (a full disk), with a
// failure status: it exited 0.
func TestFmtWriteError(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/full")
	}
	defer full.Close()
	script := filepath.Join(t.TempDir(), "f.ipcflow")
	os.WriteFile(script, []byte("stage a = seq 3\n"), 0o644)
	var stderr bytes.Buffer
	if code := Main([]string{"fmt", script}, nil, full, &stderr); code == 0 || !bytes.Contains(stderr.Bytes(), []byte("no space left on device")) {
		t.Errorf("status %d, stderr %q; want a failure naming the full disk", code, stderr.Bytes())
	}
}
