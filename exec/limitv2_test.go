package exec

import (
	"strings"
	"testing"

	"github.com/ipcflow/ipcflow/isolate"
	"github.com/ipcflow/ipcflow/parser"
)

// Under cgroup v2 a pids limit on a stage run by ipcflow's stage shell is
// one line at its start, not Go's crash dump when the shell's threads hit
// it (v1 forks each program into the pids group: isolate.Programs). A
// plain command is limited as before.
func TestV2PidsLimitOnAShellStage(t *testing.T) {
	st := &liveStage{plan: &StagePlan{
		Stage:  &parser.Stage{Name: "p", Limits: &parser.Limits{Pids: 3}},
		Limits: []isolate.Mechanism{{Resource: "pids", Value: "3", V2: true, How: "cgroup v2 pids.max"}},
	}}
	_, _, _, err := limited(st, &Process{Shell: true, Path: "/bin/true", Argv: []string{"true"}})
	if err == nil || !strings.Contains(err.Error(), "limit pids=3: under cgroup v2") {
		t.Errorf("a shell stage: %v, want the one-line refusal", err)
	}
	if _, _, _, err := limited(st, &Process{Path: "/bin/true", Argv: []string{"true"}}); err != nil {
		t.Errorf("a plain command: %v", err)
	}
}
