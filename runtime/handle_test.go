package runtime

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"

	"github.com/lionactor/lionactor/messages"
)

// watched returns a handle whose request is PENDING, counting the cancels
// its context's watch sends.
func watched(cancels *atomic.Int32) (*Handle, *messages.Lifecycle) {
	h := newHandle(uuid.New(), cancelFunc(func(uuid.UUID, error) { cancels.Add(1) }))
	lc := messages.NewLifecycle(h.ID(), &messages.Request{Call: noop}, time.Now())
	h.publish(lc.Pending(time.Now()))
	return h, lc
}

func TestWatchCancelsOnlyWhileTheRequestLives(t *testing.T) {
	// synctest.Wait returns once the watch's goroutine, if any, has run.
	t.Run("live", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var (
				cancels atomic.Int32
				ws      watches
			)
			h, _ := watched(&cancels)
			ctx, cancel := context.WithCancel(context.Background())
			ws.add(ctx, h)
			cancel()
			synctest.Wait()
			if n := cancels.Load(); n != 1 {
				t.Errorf("a cancelled context sent %d cancels, want 1", n)
			}
		})
	})
	t.Run("ended after the watch began", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var (
				cancels atomic.Int32
				ws      watches
			)
			h, lc := watched(&cancels)
			ctx, cancel := context.WithCancel(context.Background())
			ws.add(ctx, h)
			h.publish(lc.Complete(time.Now(), messages.Result{}))
			if n := ws.size(); n != 0 {
				t.Errorf("%d contexts still watched after the only request ended", n)
			}
			cancel()
			synctest.Wait()
			if n := cancels.Load(); n != 0 {
				t.Errorf("a context cancelled after the end sent %d cancels", n)
			}
		})
	})
	t.Run("ended before the watch began", func(t *testing.T) {
		// Submit begins the watch after sending the request, which may have
		// ended by then.
		synctest.Test(t, func(t *testing.T) {
			var (
				cancels atomic.Int32
				ws      watches
			)
			h, lc := watched(&cancels)
			h.publish(lc.Complete(time.Now(), messages.Result{}))
			ctx, cancel := context.WithCancel(context.Background())
			ws.add(ctx, h)
			if n := ws.size(); n != 0 {
				t.Errorf("%d contexts watched for a request that had ended", n)
			}
			cancel()
			synctest.Wait()
			if n := cancels.Load(); n != 0 {
				t.Errorf("a context cancelled after the end sent %d cancels", n)
			}
		})
	})
}

// Requests submitted with one context share its watch; a context of its
// own, or a child with a Done channel of its own, has its own; each fires
// only for its requests, and a context done before the watch began still
// cancels. The watch of a context ends with its last request.
func TestWatchesShareAContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ws watches
		cancelled := map[uuid.UUID]int{}
		var mu sync.Mutex
		owner := cancelFunc(func(id uuid.UUID, cause error) {
			if !errors.Is(cause, messages.ErrCancelled) || !errors.Is(cause, context.Canceled) {
				t.Errorf("cause %v", cause)
			}
			mu.Lock()
			cancelled[id]++
			mu.Unlock()
		})
		handle := func() (*Handle, *messages.Lifecycle) {
			h := newHandle(uuid.New(), owner)
			lc := messages.NewLifecycle(h.ID(), &messages.Request{Call: noop}, time.Now())
			h.publish(lc.Pending(time.Now()))
			return h, lc
		}
		batch, cancelBatch := context.WithCancel(context.Background())
		valued := context.WithValue(batch, struct{}{}, "v") // the same Done channel
		child, cancelChild := context.WithCancel(batch)
		defer cancelChild()
		var inBatch, inChild []*Handle
		for range 3 {
			h, _ := handle()
			ws.add(batch, h)
			inBatch = append(inBatch, h)
		}
		h, _ := handle()
		ws.add(valued, h)
		inBatch = append(inBatch, h)
		ended, lc := handle()
		ws.add(batch, ended)
		ended.publish(lc.Complete(time.Now(), messages.Result{}))
		h, _ = handle()
		ws.add(child, h)
		inChild = append(inChild, h)
		if n := ws.size(); n != 2 {
			t.Fatalf("%d watches for two Done channels", n)
		}
		cancelChild()
		synctest.Wait()
		if len(cancelled) != 1 || cancelled[inChild[0].ID()] != 1 {
			t.Fatalf("the child's cancel cancelled %v", cancelled)
		}
		cancelBatch()
		synctest.Wait()
		for _, h := range inBatch {
			if cancelled[h.ID()] != 1 {
				t.Errorf("request of the batch cancelled %d times, want once", cancelled[h.ID()])
			}
		}
		if cancelled[ended.ID()] != 0 || ws.size() != 0 {
			t.Errorf("the ended request cancelled %d times; %d watches left", cancelled[ended.ID()], ws.size())
		}
		// A context done already: its request is cancelled all the same.
		late, _ := handle()
		ws.add(batch, late)
		synctest.Wait()
		if cancelled[late.ID()] != 1 || ws.size() != 0 {
			t.Errorf("a request submitted with a done context: cancelled %d times, %d watches left", cancelled[late.ID()], ws.size())
		}
	})
}

func TestNewIDIsAVersion4UUID(t *testing.T) {
	seen := map[uuid.UUID]bool{}
	for range 1000 {
		id := newID()
		if id.Version() != 4 || id.Variant() != uuid.RFC4122 {
			t.Fatalf("%s: version %d variant %v, want 4 RFC4122", id, id.Version(), id.Variant())
		}
		if seen[id] {
			t.Fatalf("%s drawn twice", id)
		}
		seen[id] = true
	}
}

// size is the number of Done channels ws watches.
func (ws *watches) size() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return len(ws.byCh)
}
