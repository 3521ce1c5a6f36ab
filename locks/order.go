package locks

import (
	"context"
	"errors"
	"fmt"
	"sort"
)

// AcquireAll takes one unit of each semaphore, in one global order (by
// POSIX name), so that two takers of overlapping sets cannot deadlock (SPEC
// 3, `uses`). A semaphore listed twice is taken once. On error it gives back
// what it took. release gives back everything.
func AcquireAll(ctx context.Context, sems []*Sem) (release func() error, err error) {
	sorted := append([]*Sem(nil), sems...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name() < sorted[j].Name() })
	var taken []*Sem
	release = func() error {
		var errs []error
		for i := len(taken) - 1; i >= 0; i-- {
			errs = append(errs, taken[i].Post())
		}
		taken = nil
		return errors.Join(errs...)
	}
	for i, sem := range sorted {
		if i > 0 && sem.Name() == sorted[i-1].Name() {
			continue
		}
		if err := sem.Wait(ctx); err != nil {
			release()
			return nil, fmt.Errorf("take semaphore %s: %w", sem.Name(), err)
		}
		taken = append(taken, sem)
	}
	return release, nil
}
