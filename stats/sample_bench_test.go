package stats

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSample is one sample of five busy stages, each its own
// process group: what --stats costs ipcflow per sample.
func BenchmarkSample(b *testing.B) {
	var specs []StageSpec
	var cmds []*exec.Cmd
	for i := 0; i < 5; i++ {
		c := exec.Command("sh", "-c", "yes > /dev/null")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, c)
		specs = append(specs, StageSpec{Name: "s"})
	}
	defer func() {
		for _, c := range cmds {
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			c.Wait()
		}
	}()
	r := New(Options{Interval: time.Hour}, specs, nil)
	for i, c := range cmds {
		r.Started(i, c.Process.Pid, nil)
	}
	time.Sleep(50 * time.Millisecond)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.mu.Lock()
		r.sample(time.Now(), false)
		r.mu.Unlock()
	}
	b.StopTimer()
	r.Stop()
}
