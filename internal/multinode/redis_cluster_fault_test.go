package multinode

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/longpoll/longpoll/broker/redis/redistest"
)

// redisCluster is a Redis Cluster of three masters, each with one replica,
// persistence off.
type redisCluster struct {
	t     *testing.T
	nodes []*redistest.Server
}

// startRedisCluster starts six cluster-enabled redis-servers with a
// cluster-node-timeout of one second, joins them with redis-cli --cluster
// create --cluster-replicas 1, and waits until every node sees the whole
// cluster up and every replica in sync.
func startRedisCluster(t *testing.T) *redisCluster {
	t.Helper()
	redistest.Require(t)
	c := &redisCluster{t: t}
	var addrs []string
	for range 6 {
		dir := t.TempDir()
		s := redistest.Start(t,
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "1000",
			"--cluster-port", strconv.Itoa(redistest.FreePort(t, false)),
		)
		c.nodes = append(c.nodes, s)
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v: %s", err, out)
	}
	if err := c.waitSettled(nil, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

// URL is the store URL of the cluster for longpoll serve: every node a
// seed, so that any one may be down when a node starts.
func (c *redisCluster) URL() string {
	u := "redis://" + c.nodes[0].Addr() + "?cluster=true"
	for _, n := range c.nodes[1:] {
		u += "&addr=" + n.Addr()
	}
	return u
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	addr   string
	master bool
	failed bool
	ranges [][2]int
}

// view returns the cluster as the node at addr sees it.
func (c *redisCluster) view(addr string) ([]clusterNode, error) {
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command("redis-cli", "-h", host, "-p", port, "cluster", "nodes").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("redis-cli -p %s cluster nodes: %v: %s", port, err, out)
	}
	var nodes []clusterNode
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("%s: cluster nodes line %q", addr, line)
		}
		a, _, _ := strings.Cut(f[1], "@")
		n := clusterNode{addr: a, master: strings.Contains(f[2], "master"), failed: strings.Contains(f[2], "fail")}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated
			}
			lo, hi, found := strings.Cut(r, "-")
			l, _ := strconv.Atoi(lo)
			h := l
			if found {
				h, _ = strconv.Atoi(hi)
			}
			n.ranges = append(n.ranges, [2]int{l, h})
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// masterOf returns the address of the master that the running nodes agree
// holds slot, "" if they do not agree or it is failed.
func (c *redisCluster) masterOf(slot int, down *redistest.Server) string {
	owner := ""
	for _, s := range c.nodes {
		if s == down {
			continue
		}
		nodes, err := c.view(s.Addr())
		if err != nil {
			return ""
		}
		o := ""
		for _, n := range nodes {
			for _, r := range n.ranges {
				if n.master && !n.failed && r[0] <= slot && slot <= r[1] {
					o = n.addr
				}
			}
		}
		if o == "" || (owner != "" && o != owner) {
			return ""
		}
		owner = o
	}
	return owner
}

// waitSettled waits until every node but down reports cluster_state:ok,
// three masters and their replicas up, all agreeing on the owner of
// every slot, and every replica's link to its master up.
func (c *redisCluster) waitSettled(down *redistest.Server, d time.Duration) error {
	deadline := time.Now().Add(d)
	var why string
	for time.Now().Before(deadline) {
		why = c.unsettled(down)
		if why == "" {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("redis cluster not settled after %v: %s", d, why)
}

func (c *redisCluster) unsettled(down *redistest.Server) string {
	for _, s := range c.nodes {
		if s == down {
			continue
		}
		host, port, _ := strings.Cut(s.Addr(), ":")
		out, err := exec.Command("redis-cli", "-h", host, "-p", port, "cluster", "info").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "cluster_state:ok") {
			return s.Addr() + ": cluster state not ok"
		}
		out, err = exec.Command("redis-cli", "-h", host, "-p", port, "info", "replication").CombinedOutput()
		if err != nil {
			return s.Addr() + ": " + err.Error()
		}
		if strings.Contains(string(out), "role:slave") && !strings.Contains(string(out), "master_link_status:up") {
			return s.Addr() + ": replica not in sync"
		}
		nodes, err := c.view(s.Addr())
		if err != nil {
			return err.Error()
		}
		masters, live := 0, 0
		for _, n := range nodes {
			if !n.failed {
				live++
				if n.master {
					masters++
				}
			}
		}
		want := len(c.nodes)
		if down != nil {
			want--
		}
		if masters != 3 || live != want {
			return fmt.Sprintf("%s sees %d masters, %d nodes up", s.Addr(), masters, live)
		}
	}
	for _, slot := range []int{0, 8000, 16383} {
		if c.masterOf(slot, down) == "" {
			return fmt.Sprintf("no agreed master of slot %d", slot)
		}
	}
	return ""
}

func (c *redisCluster) server(addr string) *redistest.Server {
	for _, s := range c.nodes {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// topicSlot is the Redis Cluster slot of a topic's keys in broker/redis:
// the topic is their hash tag.
func topicSlot(t *testing.T, c *redisCluster, topic string) int {
	t.Helper()
	n, err := strconv.Atoi(redistest.Cli(t, c.nodes[0].Addr(), "cluster", "keyslot", "{"+topic+"}"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The JetStream fault scenario on Redis Cluster, for comparison: three
// masters with a replica each (asynchronous replication), the master of
// topic 0's slot SIGKILLed (its replica takes over after the one-second
// cluster-node-timeout) and restarted (it comes back empty and follows
// its replica, now master), a longpoll node SIGKILLed and restarted, a
// replica SIGKILLed, and the master of that slot killed again. Loss is an
// expected outcome here: the test counts acknowledged messages never
// delivered, out of order or behind a head that moved back, and fails
// only if its own accounting does not add up.
func TestRedisClusterFaults(t *testing.T) {
	if raceEnabled {
		t.Skip("SKIP: the fault test runs without the race detector")
	}
	if testing.Short() {
		t.Skip("SKIP: the Redis Cluster comparison runs without -short")
	}
	rc := startRedisCluster(t)
	sc := &faultScenario{
		topics: 10, perTopic: 1000, subscribers: 30,
		store:    rc.URL(),
		nodeArgs: []string{"--retention-messages", "20000", "--max-hold", "10s"},
		interval: 40 * time.Millisecond,
		timeout:  150 * time.Second,
	}
	slot := topicSlot(t, rc, topicName(0))
	var killed []string
	killMaster := func(t *testing.T, sc *faultScenario) {
		m := rc.server(rc.masterOf(slot, nil))
		if m == nil {
			t.Errorf("no master of slot %d", slot)
			return
		}
		killed = append(killed, "master "+m.Addr())
		m.Kill()
		start := time.Now()
		for rc.masterOf(slot, m) == "" || rc.masterOf(slot, m) == m.Addr() {
			if time.Since(start) > 20*time.Second {
				t.Errorf("no replica took over slot %d in 20s", slot)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		killed = append(killed, fmt.Sprintf("failover in %v", time.Since(start).Round(10*time.Millisecond)))
		m.Restart()
		if err := rc.waitSettled(nil, 30*time.Second); err != nil {
			t.Error(err)
		}
	}
	killReplica := func(t *testing.T, sc *faultScenario) {
		master := rc.masterOf(slot, nil)
		for _, s := range rc.nodes {
			if s.Addr() != master && strings.Contains(redistest.Cli(t, s.Addr(), "info", "replication"), "master_port:"+master[strings.LastIndex(master, ":")+1:]) {
				killed = append(killed, "replica "+s.Addr())
				s.Kill()
				time.Sleep(time.Second)
				s.Restart()
				break
			}
		}
		if err := rc.waitSettled(nil, 30*time.Second); err != nil {
			t.Error(err)
		}
	}
	sc.faults = []fault{
		{0.15, "master SIGKILL+restart", killMaster},
		{0.35, "longpoll node SIGKILL+restart", func(t *testing.T, sc *faultScenario) { sc.killNode(t, 1) }},
		{0.55, "replica SIGKILL+restart", killReplica},
		{0.75, "master SIGKILL+restart", killMaster},
	}
	rep := sc.run(t)
	t.Logf("Redis Cluster (3 masters + 3 replicas, cluster-node-timeout 1000ms, slot %d of %s; %s): %s",
		slot, topicName(0), strings.Join(killed, ", "), rep)
}
