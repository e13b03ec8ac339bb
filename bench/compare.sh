#!/usr/bin/env bash
# Compares longpoll with Nchan over several interleaved runs of one
# scenario, because on a shared 2-core machine one run of each differs from
# the next by up to 20% or more (docs/performance.md). Each run starts a
# fresh server pinned to CPU 0, with the load on CPU 1, as bench/run.sh
# does; which of the two goes first alternates from run to run. It prints
# every run's figure and the median over the runs.
#
#   bench/compare.sh fanout-10000|fanout-19000|throughput [RUNS [BIN]]
#
# The figure is the median of a fan-out's per-round times until all
# received, with the run's p99 beside it, or a throughput run's server CPU
# per delivery; beside it, the CPU per delivery of the server and of the
# load (the bench and its workers) over the measured window. RUNS
# defaults to 5; BIN, the longpoll binary measured and the one that runs
# the bench, to longpoll on PATH. BENCH_ARGS, if set, is
# added to every run's bench flags (for example BENCH_ARGS='--workers 1').
# Needs nginx with libnginx-mod-nchan, and jq.
set -euo pipefail
scenario=${1:?fanout-10000, fanout-19000 or throughput}
runs=${2:-5}
bin=${3:-longpoll}
conf=$(cd "$(dirname "$0")" && pwd)/nchan/nginx.conf
case $scenario in
fanout-10000) args=(--scenario fanout --subscribers 10000 --messages 10) ;;
fanout-19000) args=(--scenario fanout --subscribers 19000 --messages 10) ;;
throughput) args=(--scenario throughput --subscribers 10000 --topics 1000 --rate 500 --duration 10s) ;;
*) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac
read -r -a extra <<<"${BENCH_ARGS:-}"
args+=("${extra[@]}")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

one() { # one longpoll|nchan RUN: writes $out/KIND-RUN.json
	local kind=$1 run=$2
	local target=(--spawn "exec taskset -c 0 $bin serve --addr 127.0.0.1:8080 --store memory --log-level warn --max-held-polls 19900" --server http://127.0.0.1:8080)
	if [ "$kind" = nchan ]; then
		mkdir -p /tmp/longpoll-nchan
		target=(--protocol nchan --spawn "exec taskset -c 0 nginx -p /tmp/longpoll-nchan/ -c $conf -e stderr" --server http://127.0.0.1:8090)
	fi
	taskset -c 1 "$bin" bench --quiet --json-file "$out/$kind-$run.json" "${target[@]}" "${args[@]}" >/dev/null
	sleep 3 # let the sockets of the run close
}

# figure FILE: the run's figure as text.
figure() {
	if [ "$scenario" = throughput ]; then
		jq -r '"\(.server_cpu_per_delivery_us) us per delivery (load \(.load_cpu_per_delivery_us // "?") us)"' "$1"
	else
		jq -r '[.rounds[].all_received_ms] | sort | (if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end * 10 | round / 10) as $m | "\($m) ms all received (median of \(length) rounds)"' "$1" |
			tr -d '\n'
		jq -r '", p99 \(.latency.p99_ms * 10 | round / 10) ms; CPU per delivery: server \(.server_cpu_per_delivery_us // "?") us, load \(.load_cpu_per_delivery_us // "?") us"' "$1"
	fi
}

for run in $(seq "$runs"); do
	if [ $((run % 2)) = 1 ]; then order="longpoll nchan"; else order="nchan longpoll"; fi
	for kind in $order; do
		one "$kind" "$run"
		printf '%-8s run %d: %s\n' "$kind" "$run" "$(figure "$out/$kind-$run.json")"
	done
done
for kind in longpoll nchan; do
	m=$(for f in "$out/$kind"-*.json; do figure "$f" | awk '{print $1}'; done | sort -n |
		awk '{a[NR] = $1} END {print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}')
	printf '%-8s median over %d runs: %s\n' "$kind" "$runs" "$m"
done
