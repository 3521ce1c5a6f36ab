package remote_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/internal/testkit"
	"github.com/ipcflow/ipcflow/internal/testkit/sshlab"
)

var long = flag.Bool("long", false, "stream 256 MiB across the hosts")

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	testkit.RemoveIpcflowBuild()
	os.Exit(code)
}

// flowCmd is the real ipcflow running script, reaching lab's hosts.
func flowCmd(t *testing.T, lab *sshlab.Lab, script string, args ...string) *exec.Cmd {
	t.Helper()
	bin := testkit.BuildIpcflow(t)
	path := filepath.Join(t.TempDir(), "flow.ipcflow")
	if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"run", path}, args...)...)
	cmd.Env = lab.Env()
	return cmd
}

// runFlow runs script to its end: its stdout, stderr and exit status.
func runFlow(t *testing.T, lab *sshlab.Lab, script string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := flowCmd(t, lab, script, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("run: %v", err)
	}
	return out.String(), errb.String(), code
}

// noLeftovers checks that nothing of the runs is left on the hosts nor
// here: agents, ports, stand-ins, the hosts' directories, kernel objects.
func noLeftovers(t *testing.T, before []string) {
	t.Helper()
	sshlab.WaitNoLeftovers(t, 10*time.Second)
	seen := map[string]bool{}
	for _, o := range before {
		seen[o] = true
	}
	// Other packages' tests make and remove objects of their own runs
	// meanwhile: only what stays new for a while counts, and not what a
	// run still alive holds (ours are over: theirs, however long they
	// take). The hosts' objects are named after no local run.
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		left = left[:0]
		live := testkit.LiveRunIDs()
		for _, o := range objects(t) {
			if !seen[o] && !live[testkit.ObjectRunID(o)] {
				left = append(left, o)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, o := range left {
		t.Errorf("kernel object left: %s", o)
	}
}

func objects(t *testing.T) []string {
	objs, err := testkit.KernelObjects("ipcflow.")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestAcrossHosts: a stream from ipcflow's host through two hosts and
// back, over each edge type, is byte for byte what bash makes of it.
func TestAcrossHosts(t *testing.T) {
	lab := sshlab.New(t, 2)
	before := objects(t)
	size := 4 << 20
	if *long {
		size = 256 << 20
	}
	data := filepath.Join(t.TempDir(), "data")
	testkit.Bash(t, fmt.Sprintf("head -c %d /dev/urandom | od -An -tx1 -v | head -c %d > %q", size/2, size, data))
	want := testkit.Sha(testkit.Bash(t, fmt.Sprintf("tr a-f A-F < %q", data)))
	// The mq edge's queues are small: every queue of the user's, on the
	// hosts too (the same root here), counts against one RLIMIT_MSGQUEUE
	// (800 KiB), which root here may not raise, and go test runs exec's
	// queue tests at the same time. Five queues of the default 10 x 8 KiB
	// made those fail with the budget used up.
	for _, typ := range []string{"pipe", "fifo", "shm", "mq msgsize=1024", "mmap", "socket"} {
		t.Run(typ, func(t *testing.T) {
			script := fmt.Sprintf("param IN = %q\nstage src on h1 = cat \"$IN\"\nstage up on h2 = tr a-f A-F\nstage sink = cat\n"+
				"src -[%s]-> up -[%s]-> sink\n", data, typ, typ)
			out, errb, code := runFlow(t, lab, script)
			if code != 0 || testkit.Sha([]byte(out)) != want {
				t.Fatalf("status %d, %d bytes (want %d), stderr:\n%s", code, len(out), size, errb)
			}
		})
	}
	noLeftovers(t, before)
}

// TestStatus: a remote stage's end is SPEC 6's, with its host named.
func TestStatus(t *testing.T) {
	lab := sshlab.New(t, 1)
	before := objects(t)
	for _, c := range []struct {
		script, out, msg string
		code             int
	}{
		{"stage a on h1 = exit 3\n", "", "ipcflow: stage a on h1: exit status 3\n", 3},
		{"stage a on h1 = kill -TERM $$\n", "", "ipcflow: stage a on h1: killed by signal SIGTERM\n", 143},
		// The writer killed by SIGPIPE after its reader finished is no failure.
		{"stage a on h1 = yes\nstage b = head -2\na -> b\n", "y\ny\n", "", 0},
		{"stage a = seq 3\nstage b on h1 = head -1\nstage c = cat\na -> b -> c\n", "1\n", "", 0},
		{"stage a on h1 = nosuchprog\n", "", "ipcflow: stage a on h1: nosuchprog: command not found\nipcflow: stage a on h1: exit status 127\n", 127},
		{"stage a on h1 dir /nonexistent = true\n", "", "ipcflow: stage a on h1: dir /nonexistent: no such directory\n", 126},
		// A param names the host; the stage sees params and its ports.
		{"param H = h1\nparam N = 4\nstage a = seq 9\nstage b (in x) on \"$H\" = head -n \"$N\" \"$x\"\na -> b.x\n", "1\n2\n3\n4\n", "", 0},
		// The first failure wins, across hosts.
		{"stage a on h1 = sleep 5\nstage b on h1 = exit 7\n", "", "ipcflow: stage b on h1: exit status 7\n", 7},
		// A program's own exit 141 is a failure, not SIGPIPE's death,
		// and a program dying of a signal is named so: as a local
		// stage's, which runs the program itself. Both went through the
		// stage shell, which made 141 a SIGPIPE (status 0) and a death
		// by SIGTERM an exit status 143.
		{"stage a on h1 = sh -c \"echo partial; exit 141\"\nstage b = cat\na -> b\n", "partial\n", "ipcflow: stage a on h1: exit status 141\n", 141},
		{"stage a on h1 = sh -c 'kill -TERM $$'\n", "", "ipcflow: stage a on h1: killed by signal SIGTERM\n", 143},
		// A word for the host's shell to expand stays the host's.
		{"stage a on h1 = sh -c 'echo \"$0\"' ~\n", "/root\n", "", 0},
	} {
		out, errb, code := runFlow(t, lab, c.script)
		if out != c.out || errb != c.msg || code != c.code {
			t.Errorf("%q: status %d, stdout %q, stderr %q; want %d, %q, %q", c.script, code, out, errb, c.code, c.out, c.msg)
		}
	}
	noLeftovers(t, before)
}

// TestUnreachable: a host that can't be reached or refuses us is one line,
// before any stage starts (the local stage would have made the file).
func TestUnreachable(t *testing.T) {
	lab := sshlab.New(t, 1)
	mark := filepath.Join(t.TempDir(), "started")
	for host, msg := range map[string]string{
		"nokey":          "Permission denied (publickey)",
		"nohost.invalid": "Could not resolve hostname nohost.invalid",
	} {
		out, errb, code := runFlow(t, lab, fmt.Sprintf("stage l = touch %q\nstage a on %s = true\n", mark, host))
		lines := strings.Split(strings.TrimSpace(errb), "\n")
		if code == 0 || out != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "ipcflow: host "+host+": ") || !strings.Contains(lines[0], msg) {
			t.Errorf("%s: status %d, stderr %q; want one line naming the host and %q", host, code, errb, msg)
		}
		if _, err := os.Stat(mark); err == nil {
			t.Errorf("%s: a stage started", host)
		}
	}
	sshlab.WaitNoLeftovers(t, 5*time.Second)
}

// startStreaming starts a flow whose remote stage on h1 streams without
// end into a local stage, and waits until bytes flow.
func startStreaming(t *testing.T, lab *sshlab.Lab) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	cmd := flowCmd(t, lab, fmt.Sprintf("stage src on h1 = yes\nstage sink = cat > %q\nsrc -[shm]-> sink\n", out))
	var errb bytes.Buffer
	cmd.Stderr = &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if fi, err := os.Stat(out); err == nil && fi.Size() > 1<<20 {
			return cmd, &errb
		}
		if time.Now().After(deadline) {
			t.Fatalf("no bytes came: %s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExit waits up to d for cmd, and returns its exit status.
func waitExit(t *testing.T, cmd *exec.Cmd, d time.Duration) int {
	t.Helper()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("ipcflow still runs after %v", d)
		return -1
	}
}

// TestConnectionLost: the host's link cut, or its sessions killed,
// mid-stream: the flow fails naming the host, within a bounded time, and
// nothing is left on either side.
func TestConnectionLost(t *testing.T) {
	for _, how := range []string{"link down", "sessions killed"} {
		t.Run(how, func(t *testing.T) {
			lab := sshlab.New(t, 1)
			before := objects(t)
			cmd, errb := startStreaming(t, lab)
			if how == "link down" {
				if err := lab.Hosts[0].LinkDown(); err != nil {
					t.Fatal(err)
				}
			} else {
				lab.Hosts[0].KillSessions()
			}
			code := waitExit(t, cmd, 20*time.Second)
			if code == 0 || !strings.Contains(errb.String(), "stage src on h1: ") {
				t.Errorf("status %d, stderr %q; want a failure naming src on h1", code, errb)
			}
			noLeftovers(t, before)
		})
	}
}

// TestKilled: ipcflow killed with SIGKILL mid-stream takes its remote
// stages with it, and their objects go.
func TestKilled(t *testing.T) {
	lab := sshlab.New(t, 1)
	before := objects(t)
	cmd, _ := startStreaming(t, lab)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	noLeftovers(t, before)
}

// TestDryRunShowsHosts: --dry-run says where each remote stage runs.
func TestDryRunShowsHosts(t *testing.T) {
	lab := sshlab.New(t, 1)
	out, errb, code := runFlow(t, lab, "stage a on h1 = seq 3\nstage b = cat\nstage c on h1 = sort | uniq\na -> b -> c\n", "--dry-run")
	if code != 0 || !strings.Contains(out, "  a on h1: over ssh") || !strings.Contains(out, "  a: exec on h1 (found on its PATH): seq 3\n") ||
		!strings.Contains(out, "  c: stage shell: sort | uniq\n") {
		t.Errorf("status %d, stdout:\n%s\nstderr: %s", code, out, errb)
	}
}

// TestStatsShowHosts: --stats-json names a remote stage's host.
func TestStatsShowHosts(t *testing.T) {
	lab := sshlab.New(t, 1)
	out, errb, code := runFlow(t, lab, "stage a on h1 = seq 3\nstage b = cat > /dev/null\na -> b\n", "--stats-json", "-")
	if code != 0 || !strings.Contains(out, `"name":"a","host":"h1"`) && !strings.Contains(out, `"host": "h1"`) {
		t.Errorf("status %d, stdout:\n%s\nstderr: %s", code, out, errb)
	}
}

// TestLeftoversSeen is the leak check's negative control: a host
// directory left on purpose is reported.
func TestLeftoversSeen(t *testing.T) {
	// A name of mktemp's shape (ipcflow. and 10 characters).
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("ipcflow.neg%07d", os.Getpid()%10000000))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dir)
	left := strings.Join(sshlab.Leftovers(), "\n")
	if !strings.Contains(left, dir) {
		t.Errorf("Leftovers missed %s: %q", dir, left)
	}
}

// TestSignalled: SIGTERM to ipcflow reaches the remote stage through its
// stand-in, and the run ends 128+15 with nothing left anywhere.
func TestSignalled(t *testing.T) {
	lab := sshlab.New(t, 1)
	before := objects(t)
	cmd, errb := startStreaming(t, lab)
	cmd.Process.Signal(syscall.SIGTERM)
	if code := waitExit(t, cmd, 20*time.Second); code != 128+15 {
		t.Errorf("status %d, want 143; stderr %q", code, errb)
	}
	noLeftovers(t, before)
}

// TestWarmMaster: when the user's ssh config gives a host a ControlPath
// with a live master, the run goes over that master (it works with the
// host's sshd no longer listening, so no connection of its own could
// have been made) and leaves it up: it is the user's.
func TestWarmMaster(t *testing.T) {
	lab := sshlab.New(t, 1)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ssh_config")
	labCfg := strings.TrimPrefix(lab.SSH, "ssh -F ")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("Include %s\nHost *\n\tControlPath %s/cm-%%h\n", labCfg, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	ssh := func(args ...string) *exec.Cmd {
		return exec.Command("ssh", append([]string{"-F", cfg, "-o", "BatchMode=yes"}, args...)...)
	}
	if out, err := ssh("-o", "ControlMaster=yes", "-o", "ControlPersist=yes", "-fN", "h1").CombinedOutput(); err != nil {
		t.Fatalf("start the warm master: %v %s", err, out)
	}
	t.Cleanup(func() { ssh("-O", "exit", "h1").Run() })
	lab.StopListening(lab.Hosts[0])

	cmd := flowCmd(t, lab, "stage a on h1 = echo over the warm one\n")
	cmd.Env = append(os.Environ(), "IPCFLOW_SSH=ssh -F "+cfg)
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "over the warm one\n" {
		t.Fatalf("run: %v, output %q", err, out)
	}
	if out, err := ssh("-O", "check", "h1").CombinedOutput(); err != nil {
		t.Fatalf("the warm master is gone after the run: %v %s", err, out)
	}
	sshlab.WaitNoLeftovers(t, 10*time.Second)
}

// TestChattyShell: a host whose shell prints before ipcflow's answer (a
// ~/.bashrc that greets) is one line quoting what it printed, before any
// stage starts, and nothing is left there. The run hung: the boot
// session waited on a stdin ipcflow held, and ipcflow on its end.
func TestChattyShell(t *testing.T) {
	lab := sshlab.NewRC(t, 1, "echo 'Welcome!'\n")
	mark := filepath.Join(t.TempDir(), "started")
	cmd := flowCmd(t, lab, fmt.Sprintf("stage l = touch %q\nstage a on h1 = true\n", mark))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- cmd.Wait() }()
	select {
	case <-ended:
	case <-time.After(60 * time.Second): // a guard against the hang, not a measure
		cmd.Process.Kill()
		<-ended
		t.Fatalf("the run did not end; stderr %q", errb.String())
	}
	want := `ipcflow: host h1: unexpected output from the host's shell before ipcflow's answer: "Welcome!" (a ~/.bashrc that prints?)` + "\n"
	if code := cmd.ProcessState.ExitCode(); code == 0 || out.Len() != 0 || errb.String() != want {
		t.Errorf("status %d, stdout %q, stderr %q; want a failure and stderr %q", code, out.String(), errb.String(), want)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Error("a stage started")
	}
	sshlab.WaitNoLeftovers(t, 5*time.Second)
}

// TestSessionEnv: a stage on a host has what the user's ssh config sends
// with a session (SendEnv, SetEnv), as `ssh host cmd` would, over the
// run's own master and over a warm one alike. ipcflow opens the sessions
// itself (mux.go), not through an ssh client that reads the config.
func TestSessionEnv(t *testing.T) {
	lab := sshlab.New(t, 1)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ssh_config")
	labCfg := strings.TrimPrefix(lab.SSH, "ssh -F ")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("Host h1\n\tSendEnv IPCFLOW_SENT_*\n\tSetEnv IPCFLOW_SENT_SET=fixed\nInclude %s\n", labCfg)), 0o600); err != nil {
		t.Fatal(err)
	}
	warmCfg := filepath.Join(dir, "warm_config")
	if err := os.WriteFile(warmCfg, []byte(fmt.Sprintf("Include %s\nHost *\n\tControlPath %s/cm-%%h\n", cfg, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ssh", "-F", warmCfg, "-o", "BatchMode=yes", "-o", "ControlMaster=yes", "-o", "ControlPersist=yes", "-fN", "h1").CombinedOutput(); err != nil {
		t.Fatalf("start the warm master: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ssh", "-F", warmCfg, "-O", "exit", "h1").Run() })
	for _, config := range []string{cfg, warmCfg} {
		cmd := flowCmd(t, lab, "stage a on h1 = echo \"$IPCFLOW_SENT_A $IPCFLOW_SENT_SET ${IPCFLOW_UNSENT-unset}\"\n")
		cmd.Env = append(os.Environ(), "IPCFLOW_SSH=ssh -F "+config, "IPCFLOW_SENT_A=sent", "IPCFLOW_UNSENT=oops")
		out, err := cmd.CombinedOutput()
		if want := "sent fixed unset\n"; err != nil || string(out) != want {
			t.Errorf("with %s: %v, output %q; want %q", filepath.Base(config), err, out, want)
		}
	}
	sshlab.WaitNoLeftovers(t, 10*time.Second)
}

// TestSessionPipesDeep: the pipes between sshd and a remote stage are
// deepened to sessionPipeSize (sshd moves them 16 to 32 KiB at a time),
// as exec deepens the local edge an ssh master moves.
func TestSessionPipesDeep(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 (to ask a pipe's size) not on PATH")
	}
	lab := sshlab.New(t, 1)
	const sizes = "import fcntl; print(fcntl.fcntl(0, 1032), fcntl.fcntl(1, 1032))" // F_GETPIPE_SZ
	out, stderr, code := runFlow(t, lab, fmt.Sprintf("stage a = cat\nstage b on h1 = %s -c '%s'\na -> b\n", python, sizes))
	want := fmt.Sprintf("%d %d\n", 1<<20, 1<<20) // remote.sessionPipeSize
	if code != 0 || out != want || stderr != "" {
		t.Errorf("status %d, stdout %q, stderr %q; want stdin's and stdout's sizes %q", code, out, stderr, want)
	}
	// A size the script sets is the host's too.
	out, stderr, code = runFlow(t, lab, fmt.Sprintf("stage a = cat\nstage b on h1 = %s -c '%s'\na -[pipe size=16K]-> b\n", python, sizes))
	if want := fmt.Sprintf("%d %d\n", 16<<10, 1<<20); code != 0 || out != want || stderr != "" {
		t.Errorf("size=16K: status %d, stdout %q, stderr %q; want %q", code, out, stderr, want)
	}
}

// TestForwardAgent: a config's ForwardAgent reaches a stage's session
// over a warm master that asked for no forwarding itself (started with
// -fN), as `ssh -S` asked for it.
func TestForwardAgent(t *testing.T) {
	agentBin, err := exec.LookPath("ssh-agent")
	if err != nil {
		t.Skip("no ssh-agent (openssh-client)")
	}
	lab := sshlab.New(t, 1)
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	agent := exec.Command(agentBin, "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	cfg := filepath.Join(dir, "ssh_config")
	labCfg := strings.TrimPrefix(lab.SSH, "ssh -F ")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("Host h1\n\tForwardAgent yes\nInclude %s\nHost *\n\tControlPath %s/cm-%%h\n", labCfg, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil || time.Now().After(deadline) {
			break
		}
	}
	master := exec.Command("ssh", "-F", cfg, "-o", "BatchMode=yes", "-o", "ControlMaster=yes", "-o", "ControlPersist=yes", "-fN", "h1")
	master.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := master.CombinedOutput(); err != nil {
		t.Fatalf("start the warm master: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ssh", "-F", cfg, "-O", "exit", "h1").Run() })
	cmd := flowCmd(t, lab, "stage a on h1 = echo ${SSH_AUTH_SOCK:+forwarded}\n")
	cmd.Env = append(os.Environ(), "IPCFLOW_SSH=ssh -F "+cfg, "SSH_AUTH_SOCK="+sock)
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "forwarded\n" {
		t.Errorf("run: %v, output %q; want the agent forwarded", err, out)
	}
	sshlab.WaitNoLeftovers(t, 10*time.Second)
}

// TestGraceAcrossHosts: a remote stage stopped by ipcflow (SIGTERM to
// ipcflow, another stage's failure) gets the grace period to clean up in
// a trap, as a local one does, whether it runs as its own program or in
// the stage shell (whose own death by SIGTERM came first). It was
// killed at once: the agent took the stage's end for its group's.
func TestGraceAcrossHosts(t *testing.T) {
	lab := sshlab.New(t, 1)
	before := objects(t)
	dir := t.TempDir()
	trap := func(mark string) string {
		m := filepath.Join(dir, mark)
		return fmt.Sprintf(`sh -c 'trap "sleep 0.5; echo cleaned > %s; exit 0" TERM; : > %s.up; while :; do sleep 0.1; done'`, m, m)
	}
	for _, c := range []struct{ name, script string }{
		{"program", "stage a on h1 = " + trap("program") + "\nstage b = cat\na -> b\n"},
		{"shell", "stage a on h1 = " + trap("shell") + "; echo after\nstage b = cat\na -> b\n"},
		{"failure", "stage a on h1 = " + trap("failure") + "\nstage b = until [ -e " + filepath.Join(dir, "failure.up") + " ]; do sleep 0.05; done; exit 3\n"},
	} {
		cmd := flowCmd(t, lab, c.script, "--grace=10s")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if c.name != "failure" {
			// Once the stage is up and trapping.
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(filepath.Join(dir, c.name+".up")); err == nil {
					break
				}
			}
			cmd.Process.Signal(syscall.SIGTERM)
		}
		code := waitExit(t, cmd, 30*time.Second)
		b, err := os.ReadFile(filepath.Join(dir, c.name))
		if err != nil || string(b) != "cleaned\n" {
			t.Errorf("%s: status %d, stderr %q: the trap did not finish (%v)", c.name, code, errb.String(), err)
		}
	}
	noLeftovers(t, before)
}

// TestMaxSessions: a flow needing more sessions on a host than its sshd
// allows fails in one line naming MaxSessions, and leaves nothing there.
// The sessions opened after the refusal left port processes waiting 30 s
// for an agent that would never come, orphaned.
func TestMaxSessions(t *testing.T) {
	lab := sshlab.New(t, 1) // MaxSessions 64: 1 boot, then 3 per stage here
	before := objects(t)
	var script strings.Builder
	const n = 30
	// The first stage writes nothing until stopped, so that every stage
	// holds its sessions at once: with stages that ended quickly, their
	// sessions closed before the last ones opened, and all fitted.
	script.WriteString("stage s0 on h1 = sleep 60\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&script, "stage s%d on h1 = cat\n", i)
	}
	for i := range n - 1 { // shm: through ipcflow's host, a session each end
		fmt.Fprintf(&script, "s%d -[shm]-> s%d\n", i, i+1)
	}
	_, errb, code := runFlow(t, lab, script.String())
	if code != 255 || !strings.Contains(errb, "ssh master refused the session: Session open refused by peer (sshd's MaxSessions on the host") {
		t.Errorf("status %d, stderr %q; want 255 and the refusal naming MaxSessions", code, errb)
	}
	noLeftovers(t, before)
}

// TestStatsCountTheHost: a remote stage's bytes in --stats are its
// process's on the host, and so are the pipe, fifo and tcp edges it
// writes, which only its writes measure. They were its stand-in's here:
// under a KiB for 4 MiB.
func TestStatsCountTheHost(t *testing.T) {
	lab := sshlab.New(t, 1)
	data := filepath.Join(t.TempDir(), "data")
	const size = 4 << 20
	if err := os.WriteFile(data, bytes.Repeat([]byte("0123456789abcde\n"), size/16), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"pipe", "fifo", "socket tcp"} {
		out, errb, code := runFlow(t, lab, fmt.Sprintf("stage a on h1 = cat %s\nstage b = cat > /dev/null\na -[%s]-> b\n", data, typ), "--stats-json", "-")
		var rep struct {
			Stages []struct {
				Name         string `json:"name"`
				BytesWritten int64  `json:"bytes_written"`
			} `json:"stages"`
			Edges []struct {
				Bytes     int64  `json:"bytes"`
				BytesFrom string `json:"bytes_from"`
			} `json:"edges"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || len(rep.Edges) != 1 || len(rep.Stages) != 2 {
			t.Fatalf("%s: status %d, %v; stdout %s, stderr %s", typ, code, err, out, errb)
		}
		// cat writes the file and nothing else.
		if a, e := rep.Stages[0].BytesWritten, rep.Edges[0]; a != size || e.Bytes != size || e.BytesFrom != "writer io" {
			t.Errorf("%s: a wrote %d, edge %d (%s); want %d from the writer's io", typ, a, e.Bytes, e.BytesFrom, size)
		}
	}
}

// TestSameHostEdges: a one-to-one pipe or fifo edge between two stages
// on the same host stays there (a pipe between them, not two sessions
// through ipcflow's host), with a pipe's every behaviour: the stream
// byte-exact, SIGPIPE for a writer whose reader finished, a reader that
// never started. Other edges between them still go through ipcflow's
// host.
func TestSameHostEdges(t *testing.T) {
	lab := sshlab.New(t, 1)
	before := objects(t)
	data := filepath.Join(t.TempDir(), "data")
	testkit.Bash(t, fmt.Sprintf("seq 1 200000 | sed 's/$/ of the lines/' > %q", data))
	want := string(testkit.Bash(t, fmt.Sprintf("tr a-z A-Z < %q | sort -r | head -3", data)))
	for _, typ := range []string{"pipe", "fifo", "shm"} {
		script := fmt.Sprintf("stage a on h1 = cat %s\nstage b on h1 = tr a-z A-Z\nstage c on h1 = sort -r\nstage d = head -3\na -[%s]-> b -[%s]-> c -> d\n", data, typ, typ)
		out, errb, code := runFlow(t, lab, script)
		if code != 0 || out != want {
			t.Errorf("%s: status %d, stdout %q, stderr %q; want %q", typ, code, out, errb, want)
		}
		dry, _, _ := runFlow(t, lab, script, "--dry-run")
		if stays := strings.Contains(dry, "fd 0: e1 (read) stays on h1: a pipe there from a, no session"); stays != (typ != "shm") {
			t.Errorf("%s: the edge stays on the host: %v; dry run:\n%s", typ, stays, dry)
		}
	}
	for _, c := range []struct {
		script, out, msg string
		code             int
	}{
		{"stage a on h1 = yes\nstage b on h1 = head -2\na -> b\n", "y\ny\n", "", 0},
		{"stage a on h1 = seq 100000000\nstage b on h1 = true\na -> b\n", "", "", 0},
		{"stage a on h1 = seq 100000000\nstage b on h1 = nosuchprog\na -> b\n", "",
			"ipcflow: stage b on h1: nosuchprog: command not found\nipcflow: stage b on h1: exit status 127\n", 127},
	} {
		out, errb, code := runFlow(t, lab, c.script)
		if out != c.out || errb != c.msg || code != c.code {
			t.Errorf("%q: status %d, stdout %q, stderr %q; want %d, %q, %q", c.script, code, out, errb, c.code, c.out, c.msg)
		}
	}
	noLeftovers(t, before)
}

// TestStartupFilesOnStderr: a host whose shell prints to stderr as it
// starts (a ~/.bashrc's greeting, where docs/remote.md says to put it) is
// heard once per remote stage, from its control session, whose stderr is
// the stage's, as `ssh host cmd` would show it; not once more per
// stream.
func TestStartupFilesOnStderr(t *testing.T) {
	lab := sshlab.NewRC(t, 1, "echo 'Welcome!' >&2\n")
	out, errb, code := runFlow(t, lab, "stage a = seq 3\nstage b on h1 = cat\nstage c = cat\na -> b -> c\n")
	if code != 0 || out != "1\n2\n3\n" || errb != "Welcome!\n" {
		t.Errorf("status %d, stdout %q, stderr %q; want the greeting once", code, out, errb)
	}
}
