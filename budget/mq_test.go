package budget

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ipcflow/ipcflow/mqueue"
)

var long = flag.Bool("long", false, "also run the tests that use up the user's RLIMIT_MSGQUEUE for a moment")

// TestMQCostMatchesKernel: queues whose costs add up to exactly the budget
// open, and one byte more does not (mqueue_get_inode's accounting): k
// default queues, then one sized to fill what is left.
func TestMQCostMatchesKernel(t *testing.T) {
	if !*long {
		t.Skip("uses up the user's RLIMIT_MSGQUEUE for a moment, which would fail other packages' tests running at the same time: run with -long")
	}
	l := ReadMQLimits()
	if l.Budget < 0 {
		t.Skip("RLIMIT_MSGQUEUE is unlimited here")
	}
	dc := MQCost(l.MsgDefault, l.MsgsizeDefault)
	k := l.Budget / dc
	rest := l.Budget - k*dc
	var mm, ms int64
	for m := l.MsgMax; m >= 1 && mm == 0; m-- {
		if s := rest/m - 2*mqMsgMsgSize; rest%m == 0 && s >= 2 && s < l.MsgsizeMax {
			mm, ms = m, s
		}
	}
	if mm == 0 {
		t.Skipf("no queue within the sysctl limits costs exactly the %d bytes left", rest)
	}
	prefix := fmt.Sprintf("/ipcflow.t%dcost.", os.Getpid())
	var names []string
	defer func() {
		for _, n := range names {
			mqueue.Unlink(n)
		}
	}()
	open := func(mm, ms int64) error {
		name := fmt.Sprintf("%s%d", prefix, len(names))
		fd, err := mqueue.Open(name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, mm, ms)
		if err == nil {
			unix.Close(fd)
			names = append(names, name)
		}
		return err
	}
	for range k {
		if err := open(l.MsgDefault, l.MsgsizeDefault); err != nil {
			t.Skipf("other queues of this user hold part of the budget now: %v", err)
		}
	}
	if err := open(mm, ms+1); !errors.Is(err, unix.EMFILE) {
		t.Fatalf("a queue one message-byte over the budget: %v, want EMFILE", err)
	}
	if err := open(mm, ms); err != nil {
		t.Fatalf("%d default queues and one of %d x %d: %v, want the exact fit to open", k, mm, ms, err)
	}
}
