// Package multinode holds the tests of several `longpoll serve` processes
// sharing one store behind a round-robin proxy: any node serves any
// cursor, a node killed mid-stream loses nothing, and a Redis restart
// without persistence is reported to clients as reset gaps. The fault
// tests run the nodes on a three-server NATS JetStream cluster
// (TestJetStreamFaults: no acknowledged message lost while servers and
// nodes are killed) and, for comparison, on a six-process Redis Cluster
// (TestRedisClusterFaults: what a master's death loses, counted). Both
// skip under the race detector; .ci/run runs the first with -short. It
// has no code besides its tests.
package multinode
