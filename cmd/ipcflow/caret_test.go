package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/creack/pty"
)

// caretScript is a script with two errors: one after a tab, one in a
// stage's shell command.
const caretScript = "stage a = cat\n\ta -> nope\nstage b = sort -x \"unterminated\n"

// The errors' lines as check prints them anywhere.
const (
	caretErr1 = "bad.ipcflow:2:7: unknown stage nope"
	caretErr2 = "bad.ipcflow:3:19: shell syntax error: reached EOF without closing quote `\"`"
)

// caretDir holds bad.ipcflow; the commands run there.
func caretDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.ipcflow"), []byte(caretScript), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// onTerminal runs ipcflow with args, in environment env, and its stderr
// on a terminal (a pty), and returns what the terminal got, with the
// terminal's \r\n as \n.
func onTerminal(t *testing.T, dir string, env []string, args ...string) (string, int) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty here (%v): the terminal case is not tested", err)
	}
	defer ptmx.Close()
	cmd := ipcflowCmd(t, args...)
	cmd.Dir = dir
	cmd.Env = append(env, asIpcflowEnv+"=1")
	cmd.Stderr = tty
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	got, _ := io.ReadAll(ptmx) // EIO once the child has gone
	code := 0
	if err := cmd.Wait(); err != nil {
		code = cmd.ProcessState.ExitCode()
	}
	if stdout.Len() > 0 {
		t.Errorf("stdout: %q", stdout.String())
	}
	return strings.ReplaceAll(string(got), "\r\n", "\n"), code
}

// withoutNoColor is the environment without NO_COLOR (the tests' own
// runners may set it).
func withoutNoColor() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NO_COLOR=") {
			env = append(env, kv)
		}
	}
	return env
}

// On a terminal each error is followed by its source line and a caret
// under its column (a tab kept as a tab), in colour unless NO_COLOR is set
// or --color=never; check, run (the quick path without kong, and with a
// flag), fmt and graph all show it.
func TestCaretOnATerminal(t *testing.T) {
	plain := caretErr1 + "\n\ta -> nope\n\t     ^\n" +
		caretErr2 + "\nstage b = sort -x \"unterminated\n                  ^\n"
	colour := "\x1b[1mbad.ipcflow:2:7:\x1b[0m unknown stage nope\n\ta -> nope\n\t     \x1b[1;32m^\x1b[0m\n" +
		"\x1b[1mbad.ipcflow:3:19:\x1b[0m shell syntax error: reached EOF without closing quote `\"`\n" +
		"stage b = sort -x \"unterminated\n                  \x1b[1;32m^\x1b[0m\n"
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"NO_COLOR=1"}, []string{"check", "bad.ipcflow"}, plain},
		{nil, []string{"check", "bad.ipcflow"}, colour},
		{nil, []string{"--color=never", "check", "bad.ipcflow"}, plain},
		{[]string{"IPCFLOW_COLOR=never"}, []string{"check", "bad.ipcflow"}, plain},
		{[]string{"NO_COLOR=1"}, []string{"run", "bad.ipcflow"}, plain},
		{[]string{"NO_COLOR=1"}, []string{"bad.ipcflow"}, plain},
		{nil, []string{"run", "--label", "bad.ipcflow"}, colour},
		{[]string{"NO_COLOR=1"}, []string{"graph", "bad.ipcflow"}, plain},
		{[]string{"NO_COLOR=1"}, []string{"fmt", "bad.ipcflow"}, plain[strings.Index(plain, caretErr2):]}, // syntax errors only
	} {
		// Each case starts from an environment without NO_COLOR.
		env := append(withoutNoColor(), c.env...)
		got, code := onTerminal(t, caretDir(t), env, c.args...)
		if code != 2 || got != c.want {
			t.Errorf("%q %q: status %d, the terminal shows\n%q\nwant\n%q", c.env, c.args, code, got, c.want)
		}
	}
}

// check's warnings get their caret too, and leave the status 0.
func TestWarningCaretOnATerminal(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "w.ipcflow"), []byte("stage a = umask 077; cat\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, code := onTerminal(t, dir, append(withoutNoColor(), "NO_COLOR=1"), "check", "w.ipcflow")
	want := "w.ipcflow:1:11: warning: stage a: the umask builtin needs bash: the stage will run with bash, not ipcflow's stage shell\n" +
		"stage a = umask 077; cat\n          ^\n"
	if code != 0 || got != want {
		t.Errorf("status %d, the terminal shows\n%q\nwant\n%q", code, got, want)
	}
}

// Off a terminal (a pipe) each error is the one line, as before, so that
// editors' problem matchers and grep keep working; --color=always asks
// for the caret and colour anywhere.
func TestNoCaretOffATerminal(t *testing.T) {
	for _, args := range [][]string{{"check", "bad.ipcflow"}, {"run", "bad.ipcflow"}, {"--color=auto", "run", "--dry-run", "bad.ipcflow"}} {
		cmd := ipcflowCmd(t, args...)
		cmd.Dir = caretDir(t)
		cmd.Env = append(withoutNoColor(), asIpcflowEnv+"=1")
		out, errs, code := run(t, cmd)
		if want := caretErr1 + "\n" + caretErr2 + "\n"; code != 2 || out != "" || errs != want {
			t.Errorf("%q: status %d, stdout %q, stderr\n%q\nwant\n%q", args, code, out, errs, want)
		}
	}
	cmd := ipcflowCmd(t, "--color=always", "check", "bad.ipcflow")
	cmd.Dir = caretDir(t)
	_, errs, code := run(t, cmd)
	if code != 2 || !strings.Contains(errs, "\x1b[1;32m^\x1b[0m") || !strings.Contains(errs, "\ta -> nope\n") {
		t.Errorf("--color=always off a terminal: status %d, stderr %q", code, errs)
	}
	cmd = ipcflowCmd(t, "--color=sometimes", "check", "bad.ipcflow")
	cmd.Dir = caretDir(t)
	if _, errs, code := run(t, cmd); code != 2 || !strings.HasPrefix(errs, "ipcflow: --color must be one of") {
		t.Errorf("--color=sometimes: status %d, stderr %q", code, errs)
	}
}
