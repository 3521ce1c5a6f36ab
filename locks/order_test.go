package locks

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestAcquireAllOrderAndRollback(t *testing.T) {
	a, b := newTestSem(t, 1), newTestSem(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// b has no unit: the a already taken goes back.
	if _, err := AcquireAll(ctx, []*Sem{b, a}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AcquireAll: %v", err)
	}
	if a.Value() != 1 {
		t.Errorf("a after a failed AcquireAll = %d, want 1", a.Value())
	}
	b.Post()
	release, err := AcquireAll(context.Background(), []*Sem{b, a, b})
	if err != nil {
		t.Fatal(err)
	}
	if a.Value() != 0 || b.Value() != 0 {
		t.Errorf("while held: a=%d b=%d", a.Value(), b.Value())
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if a.Value() != 1 || b.Value() != 1 {
		t.Errorf("after release: a=%d b=%d, want 1 1 (b listed twice is taken once)", a.Value(), b.Value())
	}
}
