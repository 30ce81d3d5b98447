#!/usr/bin/env bash
# Two checkouts measured alternately on one machine: status_get_rps three times each, then
# the harness on taskstatus (PostgreSQL and SQLite) twice each. Each checkout needs its .venv.
#   bench/before_after.sh BEFORE_DIR AFTER_DIR > figures.txt
set -u
before=$1 after=$2
for _ in 1 2 3; do
    for d in "$before" "$after"; do
        (cd "$d" && echo "$d status $(.venv/bin/python -c 'import json; from bench import status_get; print(json.dumps(status_get.run()))' 2>/dev/null | tail -n 1)")
    done
done
for _ in 1 2; do
    for d in "$before" "$after"; do
        (cd "$d" && echo "$d e2e $(.venv/bin/python -m bench.peers.run --systems taskstatus_postgres,taskstatus_sqlite \
            --n 5000 --runs 1 --pickup-tries 3 --no-sweep 2>/dev/null | tail -n 1)")
    done
done
