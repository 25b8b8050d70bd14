#!/usr/bin/env bash
# make run: the example in the foreground: the remote source, then the master with
# the agent and the workers. Ctrl-C stops the master (which stops the workers, then
# the agent), then the source, and this exits with the master's status: 0 after a
# clean stop. Usage: examples/run.sh BIN_DIR
#
# Why job control: a terminal's Ctrl-C sends SIGINT to its whole foreground process
# group; make, which would get it too, then kills itself with it whatever the
# recipe does, and the source would stop at the same moment as the master (the agent
# warns that its change feed went away). So the source and the master each run in
# a process group of their own (set -m), and in a terminal's foreground the master
# takes the terminal: Ctrl-C reaches the master alone. Elsewhere (no terminal, in
# the background) this shell traps INT, TERM and HUP and stops the master itself.
set -u
bin=${1:?usage: run.sh BIN_DIR}

# The watcher: should this shell die first (make killed, the terminal closed), it
# stops what is left, the master first, once fd 3 closes. It ignores the signals
# and learns the pids from fd 3 ("-" clears its list).
exec 3> >(
	trap '' INT TERM HUP
	pids=
	while read -r p; do
		if [ "$p" = - ]; then pids=; else pids="$p $pids"; fi
	done
	for p in $pids; do
		kill -TERM "$p" 2>/dev/null || continue
		while kill -0 "$p" 2>/dev/null && ! ps -o stat= -p "$p" 2>/dev/null | grep -q Z; do sleep 0.1; done
	done
)

# In a terminal's foreground? (ps shows + in the state of a foreground process.)
tty=
if [ -t 2 ]; then
	case $(ps -o stat= -p $$ 2>/dev/null) in *+*) tty=1 ;; esac
fi
jobcontrol() { if [ -n "$tty" ]; then set -m; else set -m 2>/dev/null; fi; }

jobcontrol
"$bin/source" 3>&- &
src=$!
set +m
echo "$src" >&3
until "$bin/source" healthcheck >/dev/null 2>&1; do
	if ! kill -0 "$src" 2>/dev/null; then
		echo "make run: the source did not start" >&2
		echo - >&3
		exit 1
	fi
	sleep 0.05
done

if [ -n "$tty" ]; then
	# In the foreground of a job of its own, the master has the terminal.
	set -m
	sh -c 'echo $$ >&3; exec "$0" 3>&-' "$bin/master"
	status=$?
	set +m
else
	jobcontrol
	"$bin/master" 3>&- &
	master=$!
	set +m
	echo "$master" >&3
	stop=
	trap '[ -n "$stop" ] || { stop=1; kill -TERM $master; }' INT TERM HUP
	wait "$master"
	status=$?
	while kill -0 "$master" 2>/dev/null; do # wait returns early for a trapped signal
		wait "$master"
		status=$?
	done
fi

echo - >&3
kill -TERM "$src"
wait "$src"
exit "$status"
