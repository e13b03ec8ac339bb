package bolt

import (
	"hash/maphash"
	"sync"
)

// watchShards spreads the watchers over locks so that Watch, stop and the
// wake-ups of publishes on different topics rarely meet.
const watchShards = 64

type watcher struct{ wake func(topic string) }

type watchShard struct {
	mu sync.Mutex
	// m holds each watched topic's watchers. A slice is never changed in
	// place, only replaced, so wake can call it after unlocking.
	m map[string][]*watcher
}

type watchers struct {
	seed   maphash.Seed
	shards [watchShards]watchShard
}

func (w *watchers) init() {
	w.seed = maphash.MakeSeed()
	for i := range w.shards {
		w.shards[i].m = make(map[string][]*watcher)
	}
}

func (w *watchers) shard(topic string) *watchShard {
	return &w.shards[maphash.String(w.seed, topic)%watchShards]
}

func (w *watchers) add(topic string, wake func(string)) (stop func()) {
	wt := &watcher{wake: wake}
	s := w.shard(topic)
	s.mu.Lock()
	old := s.m[topic]
	list := make([]*watcher, len(old), len(old)+1)
	copy(list, old)
	s.m[topic] = append(list, wt)
	s.mu.Unlock()

	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			old := s.m[topic]
			if len(old) == 1 && old[0] == wt {
				delete(s.m, topic)
				return
			}
			list := make([]*watcher, 0, len(old))
			for _, o := range old {
				if o != wt {
					list = append(list, o)
				}
			}
			s.m[topic] = list
		})
	}
}

// wake calls the watchers of topic, outside any lock.
func (w *watchers) wake(topic string) {
	s := w.shard(topic)
	s.mu.Lock()
	list := s.m[topic]
	s.mu.Unlock()
	for _, wt := range list {
		wt.wake(topic)
	}
}

func (w *watchers) watched(topic string) bool {
	s := w.shard(topic)
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m[topic]) > 0
}

// Watch calls wake(topic) after every Append to topic that appended
// something, until stop is called. This broker is single-node: only
// appends made through this Broker wake. After Close, Watch does nothing.
func (b *Broker) Watch(topic string, wake func(topic string)) (stop func()) {
	if b.closed.Load() {
		return func() {}
	}
	return b.watchers.add(topic, wake)
}
