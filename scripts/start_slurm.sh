#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine, for tests/test_slurm.py and for trying
# `dlgrade grade --executor slurm` without a real cluster (as root; scripts/install_slurm.sh first).
#
#   munged     authentication
#   mariadbd   + slurmdbd: job accounting, so that sacct answers (dlgrade status reads it)
#   slurmctld  the controller, slurmd the one node: every core and the memory `slurmd -C` reports
#
# Idempotent: does nothing when the node already answers; starts only the daemons that are not
# running. It writes /etc/slurm/slurm.conf and slurmdbd.conf only when they are missing or were
# written by this script (a cluster of your own is never touched). Memory limits are enforced by
# polling (jobacct_gather/linux with OverMemoryKill, every second): a task that goes over its
# --mem is killed whole and ends OUT_OF_MEMORY, as on a cluster that enforces memory by cgroups.
# Logs: /var/log/slurm/.
set -euo pipefail
log() { printf '[slurm] %s\n' "$*" >&2; }
MARK="# written by dlgrade scripts/start_slurm.sh"
CONF=/etc/slurm/slurm.conf
DBDCONF=/etc/slurm/slurmdbd.conf
CLUSTER=dlgrade

node_up() { sinfo -h -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc|comp)'; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2; shift 2
    for _ in $(seq 1 $((seconds * 4))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    log "$what did not come up within $seconds s; see /var/log/slurm/"
    return 1
}
running() { pgrep -x "$1" >/dev/null 2>&1; }

if command -v sinfo >/dev/null 2>&1 && node_up; then
    exit 0
fi
if ! command -v slurmctld >/dev/null 2>&1 && [[ ! -x /usr/sbin/slurmctld ]]; then
    log "Slurm is not installed: run scripts/install_slurm.sh (as root), or use your cluster's own Slurm"
    exit 3
fi
if [[ $(id -u) -ne 0 ]]; then
    log "Slurm's daemons are not running; start them as root (sudo bash scripts/start_slurm.sh)"
    exit 3
fi
for f in "$CONF" "$DBDCONF"; do
    if [[ -e $f ]] && ! grep -qF "$MARK" "$f"; then
        log "$f was not written by this script: start your own cluster's daemons instead"
        exit 3
    fi
done
mkdir -p /etc/slurm /var/log/slurm /var/spool/slurmctld /var/spool/slurmd /run/munge /run/mysqld

# --- munge
if ! running munged; then
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
    chown munge:munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
fi
wait_for 10 munged bash -c 'munge -n | unmunge' || exit 3

# --- accounting database
PASS=""
if [[ -e $DBDCONF ]]; then
    PASS="$(sed -n 's/^StoragePass=//p' "$DBDCONF")"
fi
PASS="${PASS:-$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')}"
if ! mariadb-admin ping >/dev/null 2>&1; then
    chown mysql:mysql /run/mysqld
    nohup /usr/sbin/mariadbd --user=mysql --skip-networking --log-error=/var/log/slurm/mariadb.log \
        >/dev/null 2>&1 &
fi
wait_for 30 mariadbd mariadb-admin ping || exit 3
mariadb -u root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
cat >"$DBDCONF" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$PASS
StorageLoc=slurm_acct_db
EOF
chmod 600 "$DBDCONF"

# --- controller and node: what slurmd finds on this machine
NODE="$(slurmd -C | head -n 1)"          # NodeName=vm CPUs=2 ... RealMemory=24105
NAME="${NODE#NodeName=}"; NAME="${NAME%% *}"
cat >"$CONF" <<EOF
$MARK
# A single-node test cluster; docs/cluster.md says what a real one needs.
ClusterName=$CLUSTER
SlurmctldHost=$NAME(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
KillWait=5
MinJobAge=300
InactiveLimit=0
$NODE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

if ! running slurmdbd; then
    slurmdbd
fi
wait_for 30 slurmdbd sacctmgr -n list cluster || exit 3
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
if ! running slurmctld; then
    slurmctld
fi
wait_for 30 slurmctld scontrol ping || exit 3
if ! running slurmd; then
    slurmd
fi
if ! wait_for 15 "the node $NAME" node_up; then  # a node the controller last saw down comes back by hand
    scontrol update nodename="$NAME" state=resume 2>/dev/null || true
    wait_for 30 "the node $NAME" node_up || exit 3
fi
log "cluster $CLUSTER up: $(sinfo -h -N -o '%N %c CPUs %m MB %t')"
