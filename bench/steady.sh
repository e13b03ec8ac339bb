#!/usr/bin/env bash
# Measures a server in the steady state of the many-topics scenario: its
# CPU time (perf's task-clock) and system calls over 5 s, per delivery,
# counted once the subscribers are all connected and the publishers
# running. A run's figure from `longpoll bench` also counts the start and
# the end of the run; this one does not, and its system call counts show
# what the kernel side does for each delivery.
#
#   bench/steady.sh longpoll [BIN]   # BIN defaults to longpoll on PATH
#   bench/steady.sh nchan
#
# Needs perf (Debian: linux-perf) with the syscalls tracepoints, and, for
# nchan, nginx with libnginx-mod-nchan. The server runs on CPU 0, the
# bench on CPU 1. Set PROFILE=FILE to also record a 6 s perf profile.
set -euo pipefail
kind=${1:?longpoll or nchan}
bin=${2:-longpoll}
conf=$(cd "$(dirname "$0")" && pwd)/nchan/nginx.conf
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
case $kind in
nchan)
	mkdir -p /tmp/longpoll-nchan
	taskset -c 0 nginx -p /tmp/longpoll-nchan/ -c "$conf" -e stderr 2>/dev/null &
	url=http://127.0.0.1:8090 proto=nchan
	calls=syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev
	;;
*)
	taskset -c 0 "$bin" serve --addr 127.0.0.1:8080 --store memory --log-level warn --max-held-polls 19900 &
	url=http://127.0.0.1:8080 proto=longpoll
	calls=syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_read,syscalls:sys_enter_writev
	;;
esac
pid=$!
sleep 1
taskset -c 1 "$bin" bench --quiet --protocol "$proto" --server "$url" --scenario throughput \
	--subscribers 10000 --topics 1000 --rate 500 --duration 25s >"$out/bench.txt" 2>&1 &
bench=$!
# Wait for deliveries to flow: the server's count for longpoll; for
# Nchan, which has none, its writes per second (5,500 once they flow).
delivered() { curl -s "$url/metrics" | awk '/^longpoll_delivered_messages_total/ {print $2}'; }
if [ "$kind" = nchan ]; then
	for _ in $(seq 60); do
		w=$(perf stat -x, -e syscalls:sys_enter_writev -p "$pid" -- sleep 1 2>&1 | awk -F, '/writev/ {print $1}')
		[ "${w:-0}" -gt 4500 ] && break
	done
else
	for _ in $(seq 120); do
		d=$(delivered)
		[ -n "$d" ] && [ "${d%.*}" -gt 2000 ] && break
		sleep 0.5
	done
	sleep 1
	before=$(delivered)
fi
perf stat -e "$calls,task-clock,context-switches" -p "$pid" -o "$out/stat.txt" -- sleep 5
if [ "$kind" = nchan ]; then
	# Each delivery and each publish's reply is one writev, and each
	# publish is delivered to the 10 subscribers of its topic.
	n=$(awk '/sys_enter_writev/ {gsub(",", "", $1); print int($1 * 10 / 11)}' "$out/stat.txt")
	unit="delivery, from writev x 10/11"
else
	n=$(($(delivered) - before))
	unit=delivery
fi
if [ -n "${PROFILE:-}" ]; then
	perf record -F 4000 -g -p "$pid" -o "$PROFILE" -- sleep 6 >/dev/null 2>&1
fi
wait "$bench" || true
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
awk -v n="$n" -v unit="$unit" '
/syscalls|task-clock|context-switches/ {
	gsub(",", "", $1); v = $1; name = $2
	if (name == "msec") { name = "cpu_us"; v *= 1000 }
	sub("syscalls:sys_enter_", "", name)
	printf "%s=%.2f ", name, v / n
}
END { printf "(per %s, %d of them)\n", unit, n }' "$out/stat.txt"
