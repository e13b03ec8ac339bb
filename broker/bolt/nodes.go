package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/longpoll/longpoll"
)

// Heartbeats are kept in memory, not in the file: a bolt file is opened by
// one process at a time (bbolt's lock), so this Broker's process is the only
// node that can share the store, and its heartbeats mean nothing once it
// has stopped. A restart starts with no node until the next heartbeat.

type nodeRegistry struct {
	mu sync.Mutex
	m  map[string]nodeEntry
}

type nodeEntry struct {
	rec   longpoll.NodeRecord
	until time.Time // the record lapses at this time
}

// Heartbeat records that node is alive, described by info, for ttl from
// now, as longpoll.NodeRegistry says. Seen is this Broker's clock.
func (b *Broker) Heartbeat(ctx context.Context, node string, info json.RawMessage, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return errClosed
	}
	if node == "" {
		return fmt.Errorf("bolt: heartbeat: no node name")
	}
	if ttl <= 0 {
		return fmt.Errorf("bolt: heartbeat of %q: ttl must be positive, got %v", node, ttl)
	}
	now := b.cfg.now()
	rec := longpoll.NodeRecord{Node: node, Info: bytes.Clone(info), Seen: now.UTC()}
	r := &b.nodes
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]nodeEntry)
	}
	r.prune(now)
	r.m[node] = nodeEntry{rec: rec, until: now.Add(ttl)}
	return nil
}

// Nodes returns the nodes whose last heartbeat has not lapsed, sorted by
// name; the lapsed ones are forgotten.
func (b *Broker) Nodes(ctx context.Context) ([]longpoll.NodeRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.closed.Load() {
		return nil, errClosed
	}
	now := b.cfg.now()
	r := &b.nodes
	r.mu.Lock()
	r.prune(now)
	out := make([]longpoll.NodeRecord, 0, len(r.m))
	for _, e := range r.m {
		rec := e.rec
		rec.Info = bytes.Clone(rec.Info)
		out = append(out, rec)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b longpoll.NodeRecord) int { return strings.Compare(a.Node, b.Node) })
	return out, nil
}

// prune forgets the records lapsed at now; r.mu is held.
func (r *nodeRegistry) prune(now time.Time) {
	for name, e := range r.m {
		if !e.until.After(now) {
			delete(r.m, name)
		}
	}
}
