package stripeapi

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestLimiterRate(t *testing.T) {
	l := NewLimiter(50)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 21; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Wait(context.Background(), Background); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// 21 tokens at 50/s with a burst of 5: 16 more take 0.32 s.
	if d := time.Since(start); d < 300*time.Millisecond || d > 800*time.Millisecond {
		t.Errorf("21 tokens at 50/s took %v", d)
	}
}

func TestLimiterInteractiveFirst(t *testing.T) {
	// One token per 200 ms: the reserved token the write may wait for and
	// the six queued background ones (1.2 s) stay far apart even when a
	// busy machine delays each wake-up by a few hundred milliseconds.
	l := NewLimiter(5)
	ctx := context.Background()
	for i := 0; i < burstFor(5); i++ {
		_ = l.Wait(ctx, Background) // drain the burst
	}

	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = l.Wait(ctx, Background)
			mu.Lock()
			order = append(order, "bg")
			mu.Unlock()
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Waiting(Background) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("background requests never queued (%d waiting)", l.Waiting(Background))
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if err := l.Wait(ctx, Interactive); err != nil {
		t.Fatal(err)
	}
	waited := time.Since(start)
	mu.Lock()
	before := len(order)
	mu.Unlock()
	wg.Wait()
	// The write may wait for the one token the dispatcher already reserved,
	// never for the six queued background requests (1.2 s).
	if before > 1 || waited > 700*time.Millisecond {
		t.Errorf("interactive waited %v behind %d background requests", waited, before)
	}
}

func TestLimiterCancel(t *testing.T) {
	l := NewLimiter(1)
	_ = l.Wait(context.Background(), Background)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.Wait(ctx, Background); err == nil {
		t.Fatal("wait past deadline succeeded")
	}
	// Without the cancel the wait ends with the next token, a second after
	// the first: half of that tells the two apart on a busy machine.
	if time.Since(start) > 500*time.Millisecond {
		t.Errorf("cancel took %v", time.Since(start))
	}
	// The canceled waiter must not swallow the next token forever.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if err := l.Wait(ctx2, Interactive); err != nil {
		t.Errorf("next wait: %v", err)
	}
}

func TestLimiterAdapts(t *testing.T) {
	l := NewLimiter(100)
	now := time.Now()
	l.Observe429(now)
	l.Observe429(now.Add(10 * time.Millisecond)) // same overload: counted once
	if got := l.Effective(); got < 69 || got > 71 {
		t.Errorf("after one 429: %v, want 70", got)
	}
	for i := 1; i <= 30; i++ {
		l.Observe429(now.Add(time.Duration(i) * time.Second))
	}
	if got := l.Effective(); got != 10 {
		t.Errorf("floor: %v, want 10", got)
	}
	t0 := now.Add(30 * time.Second)
	l.ObserveOK(t0.Add(500 * time.Millisecond)) // too soon
	if got := l.Effective(); got != 10 {
		t.Errorf("recovered too fast: %v", got)
	}
	for i := 1; i <= 40; i++ {
		l.ObserveOK(t0.Add(time.Duration(i) * time.Second))
	}
	if got := l.Effective(); got != 100 {
		t.Errorf("after recovery: %v, want 100", got)
	}
}
