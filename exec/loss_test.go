package exec

import (
	"regexp"
	"testing"

	"github.com/ipcflow/ipcflow/parser"
)

func init() {
	for name, cmd := range map[string]string{"udp-overload": "sleep 1; wc -l", "udp-light": "wc -l"} {
		testFlows[name] = func() *parser.Graph {
			b := newGraph()
			src := "seq 1 2000000"
			if name == "udp-light" {
				src = "seq 1 10"
			}
			b.stage("a", src)
			b.stage("b", cmd)
			b.edge("a", "b", parser.Socket, parser.Options{Socket: "udp"})
			return b.g
		}
	}
}

// A udp edge that loses datagrams under overload (13.8 MB into a reader
// that sleeps first) says so in one line at the end, without --stats;
// the run still succeeds. One that loses nothing says nothing.
func TestUDPLossIsReported(t *testing.T) {
	fr := newFlowRun(t, "udp-overload", "--timeout=60s")
	if code := fr.run(t); code != 0 {
		t.Fatalf("exit status %d: %s", code, fr.stderr.Bytes())
	}
	re := regexp.MustCompile(`\Aipcflow: edge e1 \(a\.out -> b\.in\): [1-9][0-9]* datagrams lost\n\z`)
	if !re.Match(fr.stderr.Bytes()) {
		t.Errorf("stderr %q, want one line of datagrams lost", fr.stderr.Bytes())
	}
	fr = newFlowRun(t, "udp-light")
	if code := fr.run(t); code != 0 || fr.stderr.Len() > 0 || fr.stdout.String() != "10\n" {
		t.Errorf("status %d, stdout %q, stderr %q", code, fr.stdout.Bytes(), fr.stderr.Bytes())
	}
}
