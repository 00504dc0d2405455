#!/usr/bin/env bash
# Submits a sweep to a Ray cluster with the real `ray job submit`:
#
#   cluster/submit.sh SPEC [ray job submit options...]
#   make submit SPEC=sweeps/examples/laptop.yaml ADDRESS=http://127.0.0.1:8265
#
# The address comes from --address or RAY_ADDRESS (through `ray dashboard` or an SSH tunnel /
# port-forward: the dashboard is never exposed publicly). The Ray auth token comes from
# RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, as for every Ray CLI.
# Without --no-wait the job's logs follow on this terminal and this script exits with the job's
# status: 0 when it SUCCEEDED, 1 otherwise. With --no-wait it prints the id to follow with
# `ray job logs -f ID` and `ray job status ID`.
set -euo pipefail

if [[ $# -lt 1 || $1 == -* ]]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
spec=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [[ ! -f $spec ]]; then
    echo "error: no spec file $spec (paths are relative to $root)" >&2
    exit 2
fi

# Our own submission id (unless given), so the final status can be asked for by id.
wait=1
id=""
address=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
        --no-wait) wait=0 ;;
        --address) address=(--address "${args[i + 1]:-}") ;;
        --address=*) address=("${args[i]}") ;;
        --submission-id) id=${args[i + 1]:-} ;;
        --submission-id=*) id=${args[i]#*=} ;;
    esac
done
if [[ -z $id ]]; then
    name=$(basename "$spec" .yaml)
    id="sweep-${name//[^A-Za-z0-9_-]/-}-$(date +%Y%m%d-%H%M%S)-$RANDOM"
    args+=(--submission-id "$id")
fi
ray=${RAY:-ray}

"$ray" job submit --working-dir . --runtime-env cluster/runtime_env.yaml "${args[@]}" \
    -- python -m sweeps run "$spec" || true

if [[ $wait == 0 ]]; then
    echo "submitted $id; follow with: ray job logs -f $id"
    exit 0
fi
report=$("$ray" job status "${address[@]}" "$id" 2>&1 || true)
case $report in
    *"Job '$id' succeeded"*) status=SUCCEEDED ;;
    *"Job '$id' failed"*) status=FAILED ;;
    *"Job '$id' was stopped"*) status=STOPPED ;;
    *) status=$(grep -o "Status for job '$id': [A-Z]*" <<<"$report" | sed 's/.*: //' || true) ;;
esac
echo "job $id: ${status:-UNKNOWN}"
[[ $status == SUCCEEDED ]]
