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
func (r *run) finishMovers() error {
	done := make(chan error, 1)
	go func() {
		var errs []error
		for i, m := range r.movers {
			if mp := r.moverPlans[i]; mp.readsStdin() && !mp.writesOwn() {
				continue // its readers, the stages, have all ended
			}
			if err := m.Wait(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r.moverPlans[i].Purpose, err))
			}
		}
		for _, w := range r.wires {
			if w.ch != nil {
				if err := w.ch.Wait(); err != nil {
					errs = append(errs, err)
				}
			}
		}
		done <- errors.Join(errs...)
	}()
	if !r.stopping {
		return <-done
	}
	select {
	case err := <-done:
		return err
	case <-time.After(r.o.Grace):
		return nil // teardownObjects closes what is left
	}
}
