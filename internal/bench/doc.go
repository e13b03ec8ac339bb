// Package bench measures a long-polling server from outside, over HTTP:
// how much memory a held poll costs (capacity), how fast one message
// reaches many subscribers (fanout), how much server CPU a delivery costs
// under steady load (throughput), and whether a burst published while
// subscribers re-poll arrives whole, once and in order (burst).
//
// It speaks two protocols: longpoll's own (docs/protocol.md) and Nchan's
// long-poll subscriber and publisher endpoints, so the same scenario can be
// run against both.
//
// Quick start, from the longpoll binary:
//
//	longpoll bench --scenario fanout --server http://127.0.0.1:8080 --subscribers 1000
//
// Subscribers run in worker processes: the binary runs itself again with
// WorkerEnv set (see Worker), so that the connections of one run are not
// bounded by one process's open-file limit. Each message carries its
// number and the wall-clock time it was sent, so latencies are measured
// across processes on one host without any clock exchange.
package bench
