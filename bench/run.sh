#!/usr/bin/env bash
# Runs the figures of docs/performance.md: longpoll on its dense and std
# transports and Nchan, side by side, the server pinned to CPU 0 and the
# load to CPU 1. Needs nginx with libnginx-mod-nchan and a longpoll binary
# on PATH; writes NAME-KIND.json and .svg in the current directory.
set -euo pipefail
conf=$(cd "$(dirname "$0")" && pwd)/nchan/nginx.conf
LP='taskset -c 0 longpoll serve --addr 127.0.0.1:8080 --store memory --log-level warn --max-held-polls 19900'
NC="mkdir -p /tmp/longpoll-nchan && exec taskset -c 0 nginx -p /tmp/longpoll-nchan/ -c $conf -e stderr"
bench() { # bench dense|std|nchan NAME ARGS...
  local kind=$1 name=$2; shift 2
  case $kind in
  nchan) set -- --protocol nchan --spawn "$NC" --server http://127.0.0.1:8090 "$@" ;;
  std) set -- --spawn "$LP --transport std" --server http://127.0.0.1:8080 "$@" ;;
  *) set -- --spawn "$LP --transport dense" --server http://127.0.0.1:8080 "$@" ;;
  esac
  echo "=== $kind $name"
  taskset -c 1 longpoll bench --quiet --json-file "$name-$kind.json" --svg "$name-$kind.svg" "$@"
  sleep 3
}
for k in dense nchan std; do bench $k capacity-19000 --scenario capacity --subscribers 19000; done
for k in dense nchan std; do bench $k fanout-10000 --scenario fanout --subscribers 10000 --messages 10; done
for k in dense nchan std; do bench $k fanout-19000 --scenario fanout --subscribers 19000 --messages 10; done
for k in dense nchan std; do bench $k fanout-10000-read-first --scenario fanout --subscribers 10000 --messages 10 --read-first; done
for k in dense nchan std; do bench $k fanout-19000-read-first --scenario fanout --subscribers 19000 --messages 10 --read-first; done
for k in dense nchan std; do bench $k throughput-1000x10 --scenario throughput --subscribers 10000 --topics 1000 --rate 500 --duration 10s; done
for k in dense nchan; do bench $k burst-1000 --scenario burst --subscribers 1000 --messages 1000 --run-timeout 4m; done
