package runtime

import (
	"context"
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
	h := newHandle(uuid.New(), func(error) { cancels.Add(1) })
	lc := messages.NewLifecycle(h.ID(), &messages.Request{Call: noop}, time.Now())
	h.publish(lc.Pending(time.Now()))
	return h, lc
}

func TestWatchCancelsOnlyWhileTheRequestLives(t *testing.T) {
	// synctest.Wait returns once the watch's goroutine, if any, has run.
	t.Run("live", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var cancels atomic.Int32
			h, _ := watched(&cancels)
			ctx, cancel := context.WithCancel(context.Background())
			h.watch(ctx)
			cancel()
			synctest.Wait()
			if n := cancels.Load(); n != 1 {
				t.Errorf("a cancelled context sent %d cancels, want 1", n)
			}
		})
	})
	t.Run("ended after the watch began", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var cancels atomic.Int32
			h, lc := watched(&cancels)
			ctx, cancel := context.WithCancel(context.Background())
			h.watch(ctx)
			h.publish(lc.Complete(time.Now(), messages.Result{}))
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
			var cancels atomic.Int32
			h, lc := watched(&cancels)
			h.publish(lc.Complete(time.Now(), messages.Result{}))
			ctx, cancel := context.WithCancel(context.Background())
			h.watch(ctx)
			cancel()
			synctest.Wait()
			if n := cancels.Load(); n != 0 {
				t.Errorf("a context cancelled after the end sent %d cancels", n)
			}
		})
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
