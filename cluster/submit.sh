#!/usr/bin/env bash
# Submits a sweep to a Ray cluster with the real `ray job submit`:
#
#   cluster/submit.sh SPEC [--set KEY=VALUE]... [--smoke-test] [ray job submit options...]
#   make submit SPEC=sweeps/examples/laptop.yaml ADDRESS=http://127.0.0.1:8265
#
# --set, --smoke-test and --restart go to `sweeps run`; every other option to `ray job submit`.
# The address comes from --address or RAY_ADDRESS (through `ray dashboard` or an SSH tunnel /
# port-forward: the dashboard is never exposed publicly). The Ray auth token comes from
# RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; when there is one and RAY_AUTH_MODE
# is unset, this script sets RAY_AUTH_MODE=token for the Ray CLI. Without --no-wait the job's logs follow on this terminal and this script exits with the job's
# status: 0 when it SUCCEEDED, 1 otherwise. With --no-wait it prints the id to follow with
# `ray job logs -f ID` and `ray job status ID`.
set -euo pipefail

if [[ $# -lt 1 || $1 == -* ]]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
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

# Ray 2.60's CLI sends the cluster's token only in token mode, and leaves the mode unset (off)
# on a client even when a token file is there: a token-auth cluster would refuse the submission.
if [[ -z ${RAY_AUTH_MODE:-} ]]; then
    token_file=${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}
    if [[ -n ${RAY_AUTH_TOKEN:-} || -s $token_file ]]; then
        export RAY_AUTH_MODE=token
    fi
fi

# Sweep options go after the spec in the job's command; the rest are `ray job submit`'s.
# Our own submission id (unless given), so the final status can be asked for by id.
wait=1
id=""
address=()
args=()
sweep_args=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --set)
            [[ $# -ge 2 ]] || { echo "error: --set needs KEY=VALUE" >&2; exit 2; }
            sweep_args+=(--set "$2")
            shift
            ;;
        --set=*) sweep_args+=(--set "${1#*=}") ;;
        --smoke-test | --restart) sweep_args+=("$1") ;;
        *) args+=("$1") ;;
    esac
    shift
done
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
    -- python -m sweeps run "$spec" "${sweep_args[@]}" || true

if [[ $wait == 0 ]]; then
    # Ray's other CLI commands need the auth mode too (see above).
    prefix=${RAY_AUTH_MODE:+RAY_AUTH_MODE=$RAY_AUTH_MODE }
    echo "submitted $id; follow with: ${prefix}ray job logs -f $id"
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
