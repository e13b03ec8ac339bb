// Package deploy holds the files that ship longpoll to where it runs, and
// the tests that keep them true to the binary: the Kubernetes manifests in
// kubernetes/, the Grafana dashboard in grafana/, the sample configuration
// file longpoll.toml, and the npm package of the browser client (../js).
//
// It has no code of its own. Its tests build the longpoll binary and check
// every file against it: the flags in the manifests against serve --help,
// their configuration against longpoll config --check, their probes and
// drain against a running server, the dashboard's series against a fresh
// server's /metrics, and the packed npm module against a server it
// subscribes and publishes to. docs/deployment.md says how to use them.
package deploy
