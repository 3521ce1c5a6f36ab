package channels

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ipcflow/ipcflow/budget"
	"github.com/ipcflow/ipcflow/internal/testkit"
)

// TestMQLongLines: lines far longer than msgsize span messages and are
// rejoined; short lines are packed many to a message.
func TestMQLongLines(t *testing.T) {
	var b bytes.Buffer
	for i := range 300 {
		fmt.Fprintf(&b, "%d:%s\n", i, strings.Repeat("L", (i*97)%3000))
	}
	b.WriteString("unterminated tail longer than one message " + strings.Repeat("T", 500))
	producer := inputFile(t, b.Bytes())
	res := runChain(t, producer, []hop{{"mq", Options{MsgSize: 128, MaxMsg: 4}}}, "cat")
	if want := testkit.Bash(t, producer+" | cat"); !bytes.Equal(res.out, want) {
		t.Fatalf("got %s, want %s", short(res.out), short(want))
	}
	st := res.stats[0]
	if min := int64(b.Len() / 127); st.Records < min {
		t.Fatalf("%d messages for %d bytes in 127-byte payloads: lines were not split", st.Records, b.Len())
	}
	// Packing: 80-byte lines, 8 KiB messages: about 100 lines a message.
	producer = inputFile(t, []byte(strings.Repeat(strings.Repeat("p", 79)+"\n", 10000)))
	res = runChain(t, producer, []hop{{"mq", Options{MsgSize: 8192}}}, "wc -l")
	if strings.TrimSpace(string(res.out)) != "10000" {
		t.Fatalf("wc -l: %q", res.out)
	}
	if st := res.stats[0]; st.Records > 10000/50 {
		t.Fatalf("%d messages for 10000 lines of 80 bytes: lines not packed", st.Records)
	}
}

// TestMQTwoProducers: two producers into one queue, with lines longer than
// msgsize: every line arrives whole, each producer's in its order.
func TestMQTwoProducers(t *testing.T) {
	env := testEnv(t)
	ch, err := Open(env, Spec{ID: "e1", Type: "mq", Options: Options{MsgSize: 256, MaxMsg: 2}, Readers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	w2, err := ch.(interface{ AddWriter() (*os.File, error) }).AddWriter()
	if err != nil {
		t.Fatal(err)
	}
	gen := func(tag string) string {
		var b bytes.Buffer
		for i := range 2000 {
			fmt.Fprintf(&b, "%s %d %s.\n", tag, i, strings.Repeat(tag, (i*131)%900))
		}
		return inputFile(t, b.Bytes())
	}
	pa, pb := exec.Command("bash", "-c", gen("a")), exec.Command("bash", "-c", gen("b"))
	pa.Stdout, pb.Stdout = ch.Writer(), w2
	var out bytes.Buffer
	c := exec.Command("cat")
	c.Stdin, c.Stdout = ch.Reader(0), &out
	for _, p := range []*exec.Cmd{pa, pb, c} {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
	}
	pa.Stdout.(*os.File).Close()
	w2.Close()
	c.Stdin.(*os.File).Close()
	pa.Wait()
	pb.Wait()
	c.Wait()
	if err := ch.Wait(); err != nil {
		t.Fatal(err)
	}
	next := map[string]int{"a": 0, "b": 0}
	for _, line := range strings.SplitAfter(out.String(), "\n") {
		if line == "" {
			continue
		}
		var tag string
		var i int
		if _, err := fmt.Sscanf(line, "%s %d", &tag, &i); err != nil || next[tag] != i {
			t.Fatalf("line out of place or torn: %q (want %s %d)", short([]byte(line)), tag, next[tag])
		}
		if want := fmt.Sprintf("%s %d %s.\n", tag, i, strings.Repeat(tag, (i*131)%900)); line != want {
			t.Fatalf("torn line %s", short([]byte(line)))
		}
		next[tag]++
	}
	if next["a"] != 2000 || next["b"] != 2000 {
		t.Fatalf("lines: %v, want 2000 each", next)
	}
}

// TestMQCheck: options above the system's limits fail naming the sysctl.
func TestMQCheck(t *testing.T) {
	l := budget.ReadMQLimits()
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{MaxMsg: l.MsgMax + 1}, "fs.mqueue.msg_max"},
		{Options{MsgSize: l.MsgsizeMax + 1}, "fs.mqueue.msgsize_max"},
		{Options{MsgSize: 1}, "at least 2"},
	} {
		err := checkMQ(c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("checkMQ(%+v) = %v, want it to name %s", c.o, err, c.want)
		}
	}
}

// TestPlanMQ: 20 mq edges fit the budget and carry data, chained; a set of
// queues whose sizes the script fixed too large fails naming the limit.
func TestPlanMQ(t *testing.T) {
	l := budget.ReadMQLimits()
	if l.Budget < 0 {
		t.Skip("RLIMIT_MSGQUEUE is unlimited here")
	}
	planned, err := budget.PlanMQ(make([]budget.Queue, 20))
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	var hops []hop
	for _, q := range planned {
		total += budget.MQCost(l.Resolve(q))
		hops = append(hops, hop{"mq", Options{PlanMaxMsg: q.PlanMaxMsg, PlanMsgSize: q.PlanMsgSize}})
	}
	mm, ms := l.Resolve(planned[0])
	t.Logf("20 queues of %d x %d bytes: %d of %d", mm, ms, total, l.Budget)
	if planned[0].MaxMsg != 0 || planned[0].MsgSize != 0 {
		t.Errorf("the plan wrote its sizes as the script's (%+v): Open could not shrink them", planned[0])
	}
	if total > l.Budget {
		t.Fatalf("plan takes %d bytes, budget %d", total, l.Budget)
	}
	producer := inputFile(t, []byte(strings.Repeat("through twenty queues\n", 20000)))
	res := runChain(t, producer, hops, "sha256sum")
	if want := testkit.Bash(t, producer+" | sha256sum"); !bytes.Equal(res.out, want) {
		t.Fatalf("got %s want %s", res.out, want)
	}

	fixed := make([]budget.Queue, 10)
	for i := range fixed {
		fixed[i] = budget.Queue{MaxMsg: l.MsgDefault, MsgSize: l.MsgsizeDefault}
	}
	if _, err := budget.PlanMQ(fixed); err == nil || !strings.Contains(err.Error(), "RLIMIT_MSGQUEUE") {
		t.Fatalf("10 fixed default queues: %v, want an error naming RLIMIT_MSGQUEUE", err)
	}
	if _, err := budget.PlanMQ(make([]budget.Queue, 5000)); err == nil || !strings.Contains(err.Error(), "RLIMIT_MSGQUEUE") {
		t.Fatalf("5000 queues: %v, want an error naming RLIMIT_MSGQUEUE", err)
	}
}

// TestMQOpenShrinksToFit: when the budget is nearly used up, a queue
// whose sizes the script left unset shrinks to fit what is left, where one
// with sizes set fails naming the limit.
func TestMQOpenShrinksToFit(t *testing.T) {
	if !*long {
		t.Skip("uses up the user's RLIMIT_MSGQUEUE for a moment: run with -long")
	}
	l := budget.ReadMQLimits()
	if l.Budget < 0 {
		t.Skip("RLIMIT_MSGQUEUE is unlimited here")
	}
	env := testEnv(t)
	var chs []Channel
	defer func() {
		for _, c := range chs {
			c.Close()
		}
	}()
	fixed := Options{MaxMsg: l.MsgDefault, MsgSize: l.MsgsizeDefault}
	for i := range l.Budget / budget.MQCost(fixed.MaxMsg, fixed.MsgSize) {
		ch, err := Open(env, Spec{ID: fmt.Sprintf("f%d", i), Type: "mq", Options: fixed})
		if err != nil {
			t.Skipf("other queues of this user hold part of the budget now: %v", err)
		}
		chs = append(chs, ch)
	}
	if _, err := Open(env, Spec{ID: "fixed", Type: "mq", Options: fixed}); err == nil || !strings.Contains(err.Error(), "RLIMIT_MSGQUEUE") {
		t.Fatalf("a fixed-size queue past the budget: %v, want the limit named", err)
	}
	ch, err := Open(env, Spec{ID: "free", Type: "mq"})
	if err != nil {
		t.Fatalf("a queue of default sizes in what is left: %v", err)
	}
	chs = append(chs, ch)
}

// TestMQOpenNamesLimit: when the budget is used up, Open's error names it.
func TestMQOpenNamesLimit(t *testing.T) {
	if !*long {
		t.Skip("uses up the user's RLIMIT_MSGQUEUE for a moment, which would fail other packages' tests running at the same time: run with -long")
	}
	l := budget.ReadMQLimits()
	if l.Budget < 0 {
		t.Skip("RLIMIT_MSGQUEUE is unlimited here")
	}
	env := testEnv(t)
	var chs []Channel
	defer func() {
		for _, c := range chs {
			c.Close()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		// Sizes set: Open may not shrink them to fit.
		ch, err := Open(env, Spec{ID: fmt.Sprintf("e%d", i), Type: "mq", Options: Options{MaxMsg: l.MsgDefault, MsgSize: l.MsgsizeDefault}})
		if err != nil {
			if !strings.Contains(err.Error(), "RLIMIT_MSGQUEUE") {
				t.Fatalf("queue %d: %v, want the limit named", i, err)
			}
			return
		}
		chs = append(chs, ch)
	}
	t.Fatal("queues never ran out")
}
