#!/usr/bin/env bash
# Measures two servers at the same time, so that whatever else the machine
# does in a run weighs on both alike: both run on CPU 0 and their two
# loads on CPU 1. Run after run on this 2-core machine, one server's
# figure moves by 20% and more; side by side, the ratio of the two moves
# by about 1% (the same binary against itself gave 0.990 and 0.993 in the
# many-topics scenario).
#
#   bench/sidebyside.sh A B [RUNS [DURATION]]
#   SCENARIO=fanout-10000 bench/sidebyside.sh A B [RUNS]
#
# A and B are each "nchan" or the path of a longpoll binary (the same one
# may be given twice); A's load runs first. RUNS defaults to 3.
#
# SCENARIO=throughput (the default): the many-topics scenario; both loads
# publish from 35 s after they start (--start-after) for DURATION (20s).
# Each server takes about a seventh of its core at this rate, so the two
# seldom wait for each other. Prints each run's server CPU per delivery of
# A and B and their ratio B/A, and the median ratio.
#
# SCENARIO=fanout-10000 or fanout-19000: ROUNDS (10) rounds of one message
# to 10,000 or 19,000 subscribers of each server, taking turns: A's rounds
# begin every 1 s (3 s at 19,000) from 35 s after the start, B's half a
# period later (--round-every, --round-offset), so that a round has both
# cores to itself, as in a run of its own. Prints each run's median time
# until all received and p99 of A and B, and the median ratio B/A of the
# median rounds; then the same until all arrived at the subscribers'
# sockets (the kernel's receive times), where the load has them.
#
# BENCH_ARGS adds flags to both benches (for example BENCH_ARGS='--workers 1');
# A_ARGS and B_ARGS to one of them (for example B_ARGS='--transport sse',
# to set streams beside long polls).
#
# The bench is the first longpoll binary given, or longpoll on PATH. Needs
# jq, and for nchan nginx with libnginx-mod-nchan.
set -euo pipefail
a=${1:?A: nchan or a longpoll binary}
b=${2:?B: nchan or a longpoll binary}
runs=${3:-3}
dur=${4:-20s}
scenario=${SCENARIO:-throughput}
conf=$(cd "$(dirname "$0")" && pwd)/nchan/nginx.conf
if [ "$a" = nchan ] && [ "$b" = nchan ]; then
	echo "at most one of A and B can be nchan" >&2
	exit 2
fi
bin=longpoll
for x in "$a" "$b"; do
	if [ "$x" != nchan ]; then
		bin=$x
		break
	fi
done
out=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$out"
}
trap cleanup EXIT

# start KIND PORT: starts a server on CPU 0; sets pid, url and proto.
start() {
	if [ "$1" = nchan ]; then
		mkdir -p /tmp/longpoll-nchan
		taskset -c 0 nginx -p /tmp/longpoll-nchan/ -c "$conf" -e stderr 2>/dev/null &
		url=http://127.0.0.1:8090 proto=nchan
	else
		taskset -c 0 "$1" serve --addr "127.0.0.1:$2" --store memory --log-level warn --max-held-polls 19900 &
		url=http://127.0.0.1:$2 proto=longpoll
	fi
	pid=$!
	pids+=("$pid")
}

read -r -a extra <<<"${BENCH_ARGS:-}"
read -r -a aextra <<<"${A_ARGS:-}"
read -r -a bextra <<<"${B_ARGS:-}"
ratios=() sratios=()
for run in $(seq "$runs"); do
	pids=()
	start "$a" 8080
	apid=$pid aurl=$url aproto=$proto
	start "$b" 8081
	bpid=$pid burl=$url bproto=$proto
	sleep 1
	# Both publish from 35 s after they start, whichever connects sooner.
	aturn=() bturn=()
	case $scenario in
	throughput)
		args=(--scenario throughput --subscribers 10000 --topics 1000 --rate 500 --duration "$dur") ;;
	fanout-10000 | fanout-19000)
		n=${scenario#fanout-} period=1
		[ "$n" = 19000 ] && period=3
		args=(--scenario fanout --subscribers "$n" --messages "${ROUNDS:-10}" --round-every "${period}s" --run-timeout 3m)
		bturn=(--round-offset "$((period * 500))ms") ;;
	*)
		echo "unknown SCENARIO $scenario" >&2
		exit 2 ;;
	esac
	args+=(--quiet --source-addrs 4 --start-after 35s)
	args+=("${extra[@]}")
	taskset -c 1 "$bin" bench "${args[@]}" "${aturn[@]}" "${aextra[@]}" --protocol "$aproto" --server "$aurl" --server-pid "$apid" --json-file "$out/a.json" >/dev/null &
	la=$!
	taskset -c 1 "$bin" bench "${args[@]}" "${bturn[@]}" "${bextra[@]}" --protocol "$bproto" --server "$burl" --server-pid "$bpid" --json-file "$out/b.json" >/dev/null &
	lb=$!
	wait "$la" "$lb"
	kill "$apid" "$bpid"
	wait "$apid" "$bpid" 2>/dev/null || true
	if [ "$scenario" != throughput ]; then
		med() { jq "[.rounds[].$1 // 0] | sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end" "$2"; }
		fa=$(med all_received_ms "$out/a.json") fb=$(med all_received_ms "$out/b.json")
		r=$(awk -v a="$fa" -v b="$fb" 'BEGIN {printf "%.3f", b / a}')
		ratios+=("$r")
		printf 'run %d: A %.1f ms (p99 %s), B %.1f ms (p99 %s) until all received, median rounds; B/A %s; server CPU per delivery A %s, B %s us; lost %s and %s\n' \
			"$run" "$fa" "$(jq .latency.p99_ms "$out/a.json")" "$fb" "$(jq .latency.p99_ms "$out/b.json")" "$r" \
			"$(jq .server_cpu_per_delivery_us "$out/a.json")" "$(jq .server_cpu_per_delivery_us "$out/b.json")" \
			"$(jq .lost "$out/a.json")" "$(jq .lost "$out/b.json")"
		# Where the load has kernel receive times: until all reached the
		# subscribers' sockets, before the load's own queue.
		sa=$(med all_arrived_ms "$out/a.json") sb=$(med all_arrived_ms "$out/b.json")
		if [ "$sa" != 0 ] && [ "$sb" != 0 ]; then
			s=$(awk -v a="$sa" -v b="$sb" 'BEGIN {printf "%.3f", b / a}')
			sratios+=("$s")
			printf '       A %.1f ms (p99 %s), B %.1f ms (p99 %s) until all arrived at the sockets; B/A %s\n' \
				"$sa" "$(jq .arrival.p99_ms "$out/a.json")" "$sb" "$(jq .arrival.p99_ms "$out/b.json")" "$s"
		fi
		sleep 3
		continue
	fi
	fa=$(jq .server_cpu_per_delivery_us "$out/a.json")
	fb=$(jq .server_cpu_per_delivery_us "$out/b.json")
	r=$(awk -v a="$fa" -v b="$fb" 'BEGIN {printf "%.3f", b / a}')
	ratios+=("$r")
	printf 'run %d: A %s us, B %s us per delivery, B/A %s (lost %s and %s; publishing began at %s and %s s)\n' \
		"$run" "$fa" "$fb" "$r" "$(jq .lost "$out/a.json")" "$(jq .lost "$out/b.json")" \
		"$(jq '.window_start_ms / 1000 | floor' "$out/a.json")" "$(jq '.window_start_ms / 1000 | floor' "$out/b.json")"
	sleep 3 # let the sockets of the run close
done
median='{r[NR] = $1} END {printf "median B/A over %d runs%s: %.3f\n", NR, what, (NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2)}'
printf '%s\n' "${ratios[@]}" | sort -n | awk -v what="" "$median"
if [ ${#sratios[@]} -gt 0 ]; then
	printf '%s\n' "${sratios[@]}" | sort -n | awk -v what=", at the sockets" "$median"
fi
