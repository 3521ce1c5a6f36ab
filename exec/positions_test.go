package exec

import (
	"bytes"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ipcflow/ipcflow/internal/testkit"
)

// edgeTypes are every edge type as an arrow's bracket says it. udp is in:
// these inputs are small enough that loopback loses nothing.
var edgeTypes = []string{"pipe", "fifo", "mq", "shm", "mmap", "socket", "socket tcp", "socket udp"}

// positions are places an edge can take in a graph (issue 10), each a flow
// with ARROW where the edge type goes and the bash command that must print
// the same bytes. $IN is 6,000 lines (120 KiB, more than a pipe holds),
// $SMALL 20 lines.
var positions = []struct {
	name, flow, bash string
	stdin            bool // the flow reads ipcflow's stdin, given $IN
}{
	{name: "into-in", flow: `
stage a = cat "$IN"
stage b = sort
a ARROW b`, bash: `cat "$IN" | sort`},
	{name: "into-port", flow: `
stage a = cat "$IN"
stage b (in p) = sort "$p"
a ARROW b.p`, bash: `sort <(cat "$IN")`},
	{name: "into-port-late", flow: `
stage a = cat "$SMALL"
stage b (in p) = sleep 0.3; cat "$p"
a ARROW b.p`, bash: `f() { sleep 0.3; cat "$1"; }; f <(cat "$SMALL")`},
	{name: "into-port-twice", flow: `
stage a = cat "$IN"
stage b (in p) = cat "$p" "$p"
a ARROW b.p`, bash: `f() { cat "$1" "$1"; }; f <(cat "$IN")`},
	{name: "into-port-never", flow: `
stage a = cat "$IN"
stage b (in p) = echo ignored
a ARROW b.p`, bash: `f() { echo ignored; }; f <(cat "$IN")`},
	{name: "into-port-after", flow: `
stage a = cat "$SMALL"
stage b (in p) after a = cat "$p"
a ARROW b.p`, bash: `cat "$SMALL"`},
	{name: "out-port", flow: `
stage a (out o) = cat "$IN" > "$o"
stage b = sort
a.o ARROW b`, bash: `cat "$IN" | sort`},
	{name: "out-port-late", flow: `
stage a (out o) = sleep 0.3; cat "$SMALL" > "$o"
stage b = cat
a.o ARROW b`, bash: `cat "$SMALL"`},
	{name: "out-port-never", flow: `
stage a (out o) = true
stage b = wc -l
a.o ARROW b`, bash: `true | wc -l`},
	{name: "out-port-to-port", flow: `
stage a (out o) = tac "$IN" > "$o"
stage b (in p) = sort "$p"
a.o ARROW b.p`, bash: `sort <(tac "$IN")`},
	{name: "out-of-err", flow: `
stage a = cat "$IN" >&2
stage b = sort
a.err ARROW b`, bash: `{ cat "$IN" >&2; } 2>&1 | sort`},
	{name: "fan-out", flow: `
stage a = cat "$IN"
stage b = sort
stage c = wc -l
a ARROW {b, c}
{b, c} -> stdout`, bash: `sort "$IN"; wc -l < "$IN"`},
	{name: "fan-out-ports", flow: `
stage a = cat "$IN"
stage j (in l, in r) = paste "$l" "$r"
stage b = sort
a ARROW {b, j.r}
b ARROW j.l`, bash: `paste <(sort "$IN") "$IN"`},
	{name: "fan-in", flow: `
stage a = cat "$IN"
stage a2 = cat "$SMALL"
stage b = cat
{a, a2} ARROW b`, bash: `cat "$IN" "$SMALL"`},
	{name: "fan-in-port", flow: `
stage a = cat "$SMALL"
stage a2 = cat "$IN"
stage b (in p) = wc -c < "$p"
{a, a2} ARROW b.p`, bash: `cat "$SMALL" "$IN" | wc -c`},
	{name: "from-stdin", stdin: true, flow: `
stage b = sort
stdin ARROW b`, bash: `sort < "$IN"`},
	{name: "from-stdin-port", stdin: true, flow: `
stage b (in p) = sort "$p"
stdin ARROW b.p`, bash: `sort < "$IN"`},
	{name: "to-stdout", flow: `
stage a = cat "$IN"
a ARROW stdout`, bash: `cat "$IN"`},
	{name: "port-to-stdout", flow: `
stage a (out o) = cat "$IN" > "$o"
a.o ARROW stdout`, bash: `cat "$IN"`},
}

// TestEveryTypeInEveryPosition runs each position over each edge type with
// the real binary and compares output and status with bash's, and checks
// that nothing is left behind. It caught a socket edge into a port (the
// port's /dev/fd path failed to open: ENXIO) and a fifo edge into a port
// whose producer had finished (the open waited for good).
func TestEveryTypeInEveryPosition(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	small := filepath.Join(dir, "small.txt")
	var lines, few bytes.Buffer
	for i := 1; i <= 6000; i++ {
		line := fmt.Sprintf("%05d line %d of the input\n", (i*7919)%6000, i)
		lines.WriteString(line)
		if i <= 20 {
			few.WriteString(line)
		}
	}
	os.WriteFile(in, lines.Bytes(), 0o600)
	os.WriteFile(small, few.Bytes(), 0o600)
	for _, pos := range positions {
		want := testkit.Bash(t, "IN="+in+" SMALL="+small+"; "+pos.bash, testkit.Stdin(lines.Bytes()))
		for _, ty := range edgeTypes {
			t.Run(pos.name+"/"+strings.ReplaceAll(ty, " ", "-"), func(t *testing.T) {
				t.Parallel()
				flow := "param IN = x\nparam SMALL = x\n" + strings.ReplaceAll(pos.flow, "ARROW", "-["+ty+"]->") + "\n"
				script := filepath.Join(t.TempDir(), "f.ipcflow")
				os.WriteFile(script, []byte(flow), 0o600)
				runBase := t.TempDir()
				check := testkit.LeakCheck(t, runBase)
				cmd := osexec.Command(bin, "run", "--timeout=30s", script, "IN="+in, "SMALL="+small)
				cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase)
				if pos.stdin {
					cmd.Stdin = bytes.NewReader(lines.Bytes())
				}
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				if code := exitCode(t, cmd.Run()); code != 0 {
					t.Fatalf("exit status %d, bash's 0\n%s\nflow:%s", code, stderr.Bytes(), flow)
				}
				if !bytes.Equal(stdout.Bytes(), want) {
					t.Errorf("printed %d bytes (%.60q), bash %d (%.60q)\nflow:%s", stdout.Len(), stdout.Bytes(), len(want), want, flow)
				}
				if stderr.Len() > 0 {
					t.Errorf("stderr: %s", stderr.Bytes())
				}
				// SPEC 6: wait for all, remove, then exit. Not a moment later.
				if ents, _ := os.ReadDir(filepath.Join(runBase, "ipcflow")); len(ents) > 0 {
					t.Errorf("the run directory %s outlived the run", ents[0].Name())
				}
				check()
			})
		}
	}
}

// ipcflow's own stdin and stdout may be sockets (a service manager's, an
// ssh session's); a port given one gets a pipe, since a socket's /dev/fd
// path cannot be opened.
func TestOwnSocketsMeetPorts(t *testing.T) {
	bin := testkit.BuildIpcflow(t)
	script := filepath.Join(t.TempDir(), "f.ipcflow")
	os.WriteFile(script, []byte("stage b (in p) = sort -r \"$p\"\nstage c (out o) = cat > \"$o\"\nstdin -> b.p\nb -> c\nc.o -> stdout\n"), 0o600)
	in, inPeer := socketPairFiles(t)
	out, outPeer := socketPairFiles(t)
	runBase := t.TempDir()
	check := testkit.LeakCheck(t, runBase)
	cmd := osexec.Command(bin, "run", script)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runBase)
	cmd.Stdin, cmd.Stdout = in, out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in.Close()
	out.Close()
	go func() {
		inPeer.Write([]byte("a\nc\nb\n"))
		inPeer.Close()
	}()
	got, _ := io.ReadAll(outPeer)
	if code := exitCode(t, cmd.Wait()); code != 0 || string(got) != "c\nb\na\n" {
		t.Fatalf("exit status %d, output %q, want 0 and \"c\\nb\\na\\n\"\n%s", code, got, stderr.Bytes())
	}
	check()
}

func socketPairFiles(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fds[0]), "sock"), os.NewFile(uintptr(fds[1]), "peer")
}
