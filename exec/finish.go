package exec

import (
	"errors"
	"fmt"
	"time"
)

// finishMovers waits, once every stage has ended, for the movers and
// channel bridges to deliver what is still in flight (a join into stdout),
// and returns their errors. A mover that reads ipcflow's own stdin into
// stages is not waited for: they have ended, and on a terminal it would
// wait for a line nobody types. One that copies stdin to ipcflow's stdout
// is the flow's output, and is waited for like any other. During a
// teardown the wait is bounded by the grace period: whatever still holds
// a pipe open then (a descendant that left its stage's group) is cut off.
func (f *flow) finishMovers() error {
	done := make(chan error, 1)
	go func() {
		var errs []error
		fromStdin := map[int]bool{} // wires that only ipcflow's stdin feeds
		for i, m := range f.movers {
			if mp := f.moverPlans[i]; mp.readsStdin() && !mp.writesOwn() {
				// Its readers, the stages, have all ended; and so has
				// the bridge of a channel it feeds (an mq, a ring), which
				// would wait for the mover's end of input.
				for _, d := range mp.Dsts {
					if d.Kind == EndWrite {
						fromStdin[d.Wire] = true
					}
				}
				continue
			}
			if err := m.Wait(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f.moverPlans[i].Purpose, err))
			}
		}
		for i, w := range f.wires {
			if w.ch != nil && !fromStdin[i] {
				if err := w.ch.Wait(); err != nil {
					errs = append(errs, err)
				}
			}
		}
		done <- errors.Join(errs...)
	}()
	if !f.stopping {
		return <-done
	}
	select {
	case err := <-done:
		return err
	case <-time.After(f.o.Grace):
		return nil // teardown closes what is left
	}
}
