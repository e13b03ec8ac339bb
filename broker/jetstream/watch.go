package jetstream

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// waker holds this node's watchers. Wake-ups come from this node's own
// appends (directly) and from every node's (through one core NATS
// subscription to <prefix>.w.>, on the goroutine nats.go runs for it).
type waker struct {
	mu       sync.RWMutex
	watchers map[string][]*watcher // copied on write
	closed   bool
}

type watcher struct {
	wake    func(topic string)
	stopped atomic.Bool
}

func newWaker() *waker { return &waker{watchers: make(map[string][]*watcher)} }

func (w *waker) watch(topic string, wake func(string)) func() {
	wt := &watcher{wake: wake}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return func() {}
	}
	w.watchers[topic] = append(slices.Clip(w.watchers[topic]), wt)
	w.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			wt.stopped.Store(true)
			w.mu.Lock()
			defer w.mu.Unlock()
			ws := slices.DeleteFunc(slices.Clone(w.watchers[topic]), func(o *watcher) bool { return o == wt })
			if len(ws) == 0 {
				delete(w.watchers, topic)
			} else {
				w.watchers[topic] = ws
			}
		})
	}
}

func (w *waker) wakeTopic(topic string) {
	w.mu.RLock()
	ws := w.watchers[topic]
	w.mu.RUnlock()
	for _, wt := range ws {
		if !wt.stopped.Load() {
			wt.wake(topic)
		}
	}
}

// wakeAll wakes every watcher: wake-ups may have been lost.
func (w *waker) wakeAll() {
	w.mu.RLock()
	all := make(map[string][]*watcher, len(w.watchers))
	for t, ws := range w.watchers {
		all[t] = ws
	}
	w.mu.RUnlock()
	for t, ws := range all {
		for _, wt := range ws {
			if !wt.stopped.Load() {
				wt.wake(t)
			}
		}
	}
}

func (w *waker) close() {
	w.mu.Lock()
	w.closed = true
	w.watchers = map[string][]*watcher{}
	w.mu.Unlock()
}

// onWake handles a wake-up from any node's append.
func (b *Broker) onWake(m *nats.Msg) {
	i := strings.LastIndexByte(m.Subject, '.')
	topic, err := DecodeTopic(m.Subject[i+1:])
	if err != nil {
		return
	}
	b.w.wakeTopic(topic)
}
