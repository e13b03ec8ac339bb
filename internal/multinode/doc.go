// Package multinode holds the tests of several `longpoll serve` processes
// sharing one Redis behind a round-robin proxy: any node serves any
// cursor, a node killed mid-stream loses nothing, and a Redis restart
// without persistence is reported to clients as reset gaps. It has no
// code besides its tests.
package multinode
