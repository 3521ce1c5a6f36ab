package exec

import (
	"regexp"
	"testing"

	"github.com/ipcflow/ipcflow/parser"
)

func init() {
	for _, name := range []string{"udp-overload", "udp-light"} {
		testFlows[name] = func() *parser.Graph {
			b := newGraph()
			if name == "udp-overload" {
				// 39 MB, where the receiving socket holds about 16 MB and
				// b's pipe 1 MiB: while b sleeps, most of it must drop,
				// even on a busy machine that sends at only 20 MB/s.
				b.stage("a", "seq 1 5000000")
				b.stage("b", "sleep 2; wc -l")
			} else {
				b.stage("a", "seq 1 10")
				b.stage("b", "wc -l")
			}
			b.edge("a", "b", parser.Socket, parser.Options{Socket: "udp"})
			return b.g
		}
	}
}

// A udp edge that loses datagrams under overload (39 MB into a reader
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
