package s3fleet

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/s3fleet/s3fleet/ledger"
)

// watcher follows the transfers whose Result may be awaited: one
// goroutine a client reads all their states in one pipelined round trip a
// look (every 200 ms, and less often for more than 1,000 of them, so that
// 10,000 waiting futures cost Redis about 4,000 reads a second rather than
// a poll each), and closes each one's done channel once it has ended.
type watcher struct {
	led  stateReader
	wake chan struct{}
	quit chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	watched map[*watched]struct{}
	closed  bool
}

// watched is one transfer being followed.
type watched struct {
	id   string
	done chan struct{} // closed when it has ended, or can no longer be followed
	err  error         // why it can no longer be followed (ErrGone, ErrClosed); nil once ended
	// progress, when set, is told the transfer's bytes whenever a look
	// finds them changed (from the watcher's goroutine).
	progress func(ledger.Standing)
	last     ledger.Standing
}

// lookEvery is how long the watcher waits between looks at n transfers.
func lookEvery(n int) time.Duration {
	const base, per = 200 * time.Millisecond, 1000
	return base * time.Duration(max(1, (n+per-1)/per))
}

// stateReader reads where transfers stand in one round trip
// (ledger.Ledger.Standings).
type stateReader interface {
	Standings(ctx context.Context, ids []string) ([]ledger.Standing, error)
}

var _ stateReader = (*ledger.Ledger)(nil)

func newWatcher(led stateReader) *watcher {
	w := &watcher{led: led, wake: make(chan struct{}, 1), quit: make(chan struct{}), watched: map[*watched]struct{}{}}
	w.wg.Add(1)
	go w.run()
	return w
}

// add follows a transfer until it ends, telling progress (if not nil)
// how it stands as it changes.
func (w *watcher) add(id string, progress func(ledger.Standing)) *watched {
	e := &watched{id: id, done: make(chan struct{}), progress: progress}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		e.err = ErrClosed
		close(e.done)
		return e
	}
	w.watched[e] = struct{}{}
	w.poke()
	return e
}

// remove stops following a transfer: its done channel closes with
// ErrCancelled.
func (w *watcher) remove(e *watched) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.watched[e]; ok {
		delete(w.watched, e)
		e.err = ErrCancelled
		close(e.done)
	}
}

// poke makes the watcher look now (a cancel, a new transfer).
func (w *watcher) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.quit)
	}
	w.mu.Unlock()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	for e := range w.watched {
		e.err = ErrClosed
		close(e.done)
	}
	clear(w.watched)
}

func (w *watcher) run() {
	defer w.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-w.quit
		cancel()
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-w.quit:
			return
		case <-w.wake:
		case <-timer.C:
		}
		n := w.look(ctx)
		timer.Reset(lookEvery(n))
	}
}

// look reads the state of every transfer followed, 1,000 to a round trip,
// and ends those that have ended or whose record is gone. It returns how
// many it follows.
func (w *watcher) look(ctx context.Context) int {
	w.mu.Lock()
	es := make([]*watched, 0, len(w.watched))
	for e := range w.watched {
		es = append(es, e)
	}
	w.mu.Unlock()
	for page := range slices.Chunk(es, 1000) {
		ids := make([]string, len(page))
		for i, e := range page {
			ids[i] = e.id
		}
		standings, err := w.led.Standings(ctx, ids)
		if err != nil {
			continue // Redis is away: look again later
		}
		type call struct {
			fn func(ledger.Standing)
			s  ledger.Standing
		}
		var calls []call
		var ended []*watched
		w.mu.Lock()
		for i, e := range page {
			if _, ok := w.watched[e]; !ok {
				continue
			}
			s := standings[i]
			if e.progress != nil && s.State != "" && s != e.last {
				e.last = s
				calls = append(calls, call{e.progress, s})
			}
			st, known := stateOf(s.State)
			switch {
			case s.State == "":
				e.err = ErrGone
			case known && !st.Final():
				continue
			}
			delete(w.watched, e)
			ended = append(ended, e)
		}
		w.mu.Unlock()
		for _, c := range calls {
			c.fn(c.s)
		}
		for _, e := range ended { // after its last progress: Result returns after it
			close(e.done)
		}
	}
	return len(es)
}
