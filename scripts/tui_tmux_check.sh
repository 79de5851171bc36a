#!/usr/bin/env bash
# Drive the installed tfminima-tui in a real terminal (tmux send-keys / capture-pane):
# start it on the quickstart (reduced with --set so runs take seconds), launch the sweep,
# see epochs progress in the Runs table, then quit choosing "cancel runs" and check that
# every run ended with a final status (queued ones recorded cancelled) and that with -j 1
# one worker process trained them all.
#
#   scripts/tui_tmux_check.sh [--keep]     (--keep: leave the work folder for inspection)
# Exit status 0 when every check passed; the last screen is printed on failure.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
KEEP=${1:-}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tui-tmux-check.XXXXXX")
SESSION="tfminima-tui-check-$$"
W=100
H=30
# Enough epochs that a run is seen running (the app polls its status every 0.5 s) and that runs are
# still queued when the script quits (~1 s a run on an idle machine; at 2 epochs all six could finish
# before the quit, and the app then quits without asking)
EPOCHS=40

command -v tmux >/dev/null || { echo "tmux not found" >&2; exit 2; }
TUI=$(command -v tfminima-tui) || { echo "tfminima-tui not installed (pip install -e .)" >&2; exit 2; }

cleanup() {
    tmux kill-session -t "$SESSION" 2>/dev/null || true
    # runs started by the app live in their own sessions: stop any that survived a failure
    for status in "$WORK"/runs/*/*/status.json; do
        [ -f "$status" ] || continue
        pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("pid") or "")' "$status")
        [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null || true
    done
    [ "$KEEP" = "--keep" ] && echo "work folder kept: $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

screen() { tmux capture-pane -p -t "$SESSION"; }

fail() {
    echo "FAIL: $*" >&2
    echo "----- last screen -----" >&2
    screen >&2 || true
    exit 1
}

wait_for() {  # wait_for REGEX SECONDS WHAT
    local pattern=$1 timeout=$2 what=$3 end=$((SECONDS + $2))
    while ((SECONDS < end)); do
        if screen | grep -Eq -- "$pattern"; then
            echo "ok: $what"
            return 0
        fi
        sleep 0.5
    done
    fail "$what: /$pattern/ not on screen after ${timeout}s"
}

cd "$WORK"
# COLUMNS / LINES (exported by a non-interactive bash under pytest) would override the pane's size;
# PYTHONPATH is passed on explicitly (a running tmux server keeps the environment it started with)
tmux new-session -d -s "$SESSION" -x "$W" -y "$H" \
    "env -u COLUMNS -u LINES ${PYTHONPATH:+PYTHONPATH='$PYTHONPATH'} '$TUI' runs --config '$REPO/experiments/quickstart.yaml' -j 1 \
     --set epochs=$EPOCHS --set dataset.train_size=256 --set dataset.val_size=64 --set dataset.test_size=64 \
     --set 'model.hidden=[16]' --set 'monitors=[]'; echo TUI-EXITED-\$?; sleep 600"

wait_for "1 Configure.*quickstart.yaml" 30 "the app starts on Configure with the quickstart"
wait_for "✓ valid" 10 "the reduced quickstart validates"
tmux send-keys -t "$SESSION" C-l
wait_for "2 Runs .*runs: 6 runs" 20 "launch: the Runs screen lists the 6 runs of the sweep"
wait_for "queued" 10 "runs beyond the concurrency limit are queued"
wait_for "(starting|pending|running)" 30 "the first runs start"
wait_for "running" 90 "a run reports running"
wait_for " [1-9][0-9]?/$EPOCHS " 90 "epoch progress appears in the table"
wait_for "completed" 90 "a run completes"

tmux send-keys -t "$SESSION" 3
wait_for "loss \(train" 10 "the Monitor screen draws the selected runs"
tmux send-keys -t "$SESSION" 2

tmux send-keys -t "$SESSION" q
wait_for "Quit and cancel runs" 10 "quitting with live runs asks what to do"
tmux send-keys -t "$SESSION" c
wait_for "TUI-EXITED-0" 15 "the app exits"

# every run directory must end in a final state; the cancelled ones write it at a step boundary
end=$((SECONDS + 60))
while ((SECONDS < end)); do
    left=$(python3 - "$WORK/runs" <<'EOF'
import json, sys
from pathlib import Path
states = [json.loads(p.read_text()).get("state") for p in Path(sys.argv[1]).glob("*/*/status.json")]
print(sum(s not in ("completed", "cancelled") for s in states))
EOF
)
    [ "$left" = "0" ] && break
    sleep 1
done
[ "$left" = "0" ] || fail "$left run(s) did not reach completed/cancelled after quitting with cancel"
echo "ok: after 'quit and cancel runs' every run is completed or cancelled"
ls "$WORK"/runs/quickstart/*.log >/dev/null || fail "no run log files in the group folder"
echo "ok: run logs written to the group folder"
# -j 1: one worker process trained every run that started (the same pid in their status files)
pids=$(python3 - "$WORK/runs" <<'EOF'
import json, sys
from pathlib import Path
statuses = [json.loads(p.read_text()) for p in Path(sys.argv[1]).glob("*/*/status.json")]
print(len({s["pid"] for s in statuses if s.get("pid")}))
EOF
)
[ "$pids" = "1" ] || fail "$pids processes trained the runs with -j 1 (one worker expected)"
echo "ok: with -j 1 one worker process trained the runs"
echo "PASS"
