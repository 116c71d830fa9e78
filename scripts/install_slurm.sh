#!/usr/bin/env bash
# Debian's Slurm for a single-node test cluster, installed only when missing (idempotent, as root):
#   slurm-wlm      slurmctld (controller), slurmd (node), the client tools (sbatch, squeue, scancel, sacct)
#   munge          the authentication daemon every Slurm daemon and client talks through
#   slurmdbd       the accounting daemon, so that sacct answers ...
#   mariadb-server ... from a MariaDB database on this machine
# scripts/start_slurm.sh configures and starts them. On a real cluster none of this is needed
# (docs/cluster.md): the cluster's own Slurm is used.
set -euo pipefail
log() { printf '[slurm] %s\n' "$*" >&2; }
declare -A need=([slurmctld]=slurm-wlm [slurmd]=slurm-wlm [sbatch]=slurm-wlm [munged]=munge
                 [slurmdbd]=slurmdbd [mariadbd]=mariadb-server)
missing=()
for cmd in "${!need[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || [[ -x "/usr/sbin/$cmd" ]] || missing+=("${need[$cmd]}")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    log "missing ${missing[*]}: install them (Debian/Ubuntu: sudo apt-get install -y ${missing[*]}); the Slurm tests skip meanwhile"
    exit 0
fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }
install || { apt-get update -q >/dev/null && install; }
