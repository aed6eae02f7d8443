#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, with accounting, for trying and testing
# bnexp's SLURM sweeps (docs/slurm.md). Needs root and Debian 12 (SLURM 22.05).
#
#   scripts/slurm.sh up [--repair-dev-null]
#                             install the packages if missing, write the configuration for
#                             this machine, start munged, mariadbd, slurmdbd, slurmctld, slurmd,
#                             wait until the node is idle (does nothing if already up)
#   scripts/slurm.sh down     cancel the jobs, stop exactly the daemons `up` started
#   scripts/slurm.sh status   what runs, and `sinfo`
#   scripts/slurm.sh env      the line to paste: export SLURM_CONF=... (the clients need it)
#
# Everything lives in one state folder, $BNEXP_SLURM_DIR (default /var/lib/bnexp-slurm):
# configuration, spool, logs and `pids` (the daemons this script started); the database
# beside it, in $BNEXP_SLURM_DIR-db (its daemon runs as the mysql user). The folder is per
# machine, not per checkout, because the ports are: 6817-6819 (SLURM) and
# $BNEXP_SLURM_DB_PORT (MariaDB, default 6830).
# BNEXP_SLURM_ACCOUNTING=0 leaves out slurmdbd and MariaDB (sacct then fails, and
# submitit cannot tell that a job died without writing its result).
#
# Root's daemons read their configuration, and kill the PIDs listed, from that folder: it
# must be root's alone (0700, not a link, in a folder others cannot replace it in), or a
# user who made it first could point slurm.conf at their own Prolog (which root runs) or
# the PID list at any process. `up` creates it so and refuses anything else, in one line.
set -euo pipefail

DIR=${BNEXP_SLURM_DIR:-/var/lib/bnexp-slurm}
DB_DIR=$DIR-db
ACCOUNTING=${BNEXP_SLURM_ACCOUNTING:-1}
DB_PORT=${BNEXP_SLURM_DB_PORT:-6830}
CLUSTER=bnexp
PARTITION=debug
export SLURM_CONF=$DIR/slurm.conf
PACKAGES=(slurmctld slurmd slurm-client munge)
DB_PACKAGES=(slurmdbd mariadb-server)
# apt and invoke-rc.d read only /usr/sbin/policy-rc.d and /dev/null is /dev/null: the variables
# exist for tests/test_slurm.py, which must not touch the machine's own.
POLICY_RC=${BNEXP_SLURM_POLICY_RC:-/usr/sbin/policy-rc.d}
NULL_DEVICE=${BNEXP_SLURM_NULL_DEVICE:-/dev/null}
REPAIR_DEV_NULL=0

say() { echo "slurm.sh: $*"; }
die() { echo "slurm.sh: error: $*" >&2; exit 1; }

# ------------------------------------------------------------------------------- helpers
alive() {  # alive PID NAME: the process exists and is still that program (PIDs get reused)
    [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]
}

recorded_pid() {  # the PID `up` recorded for daemon NAME, if any
    [ -f "$DIR/pids" ] && awk -v n="$1" '$1 == n {print $2}' "$DIR/pids" | tail -1 || true
}

record() {  # record NAME PID
    echo "$1 $2" >> "$DIR/pids"
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll COMMAND until it succeeds
    local seconds=$1 what=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "$what did not come up within ${seconds}s (logs in $DIR/log/)"
        sleep 0.2
    done
}

# ------------------------------------------------------------------------- the state folder
owned_safely() {  # owned_safely PATH USER: a folder (not a link) of USER, writable by no one else
    [ ! -L "$1" ] && [ -d "$1" ] && [ "$(stat -c %U "$1")" = "$2" ] &&
        [ $(( 0$(stat -c %a "$1") & 022 )) = 0 ]
}

check_folder() {  # check_folder PATH USER: refuse, in one line, a PATH that is not USER's alone
    local path=$1 user=$2 parent
    parent=$(dirname "$path")
    # whoever can write the parent (without its sticky bit) can swap the folder after any check
    if [ "$(stat -c %u "$parent" 2>/dev/null)" != 0 ] ||
        { [ $(( 0$(stat -c %a "$parent") & 022 )) != 0 ] && [ ! -k "$parent" ]; }; then
        die "$parent (holding the state folder $path) must be root's and writable by no one else; set BNEXP_SLURM_DIR to a folder in one that is"
    fi
    if [ -L "$path" ]; then
        die "the state folder $path is a symbolic link (to $(readlink "$path")); refusing it: remove it, or set BNEXP_SLURM_DIR"
    fi
    if [ -e "$path" ] && ! owned_safely "$path" "$user"; then
        die "the state folder $path is not $user's alone (owner $(stat -c %U "$path"), mode $(stat -c %a "$path")); refusing it: someone else may have made it first. Remove it, or set BNEXP_SLURM_DIR"
    fi
}

make_state_folder() {  # the folder `up` writes: root's, 0700
    check_folder "$DIR" root
    [ -d "$DIR" ] || mkdir -m 0700 "$DIR"
    chmod 0700 "$DIR"
    mkdir -p -m 0700 "$DIR"/{state,spool,log}
}

make_db_folder() {  # the database's folder: the mysql user's, 0700 (its daemon runs as mysql)
    check_folder "$DB_DIR" mysql
    [ -d "$DB_DIR" ] || install -d -o mysql -g mysql -m 0700 "$DB_DIR"
}

check_dev_null() {
    # /dev/null can become a plain file (a program that replaces the file it writes,
    # as MXNet's profiler did when bnexp's bench gave it os.devnull), and munged (as the
    # munge user) then refuses to start. It must be the character device 1:3; it is
    # recreated only when asked (--repair-dev-null): it is the whole machine's.
    [ "$(stat -c '%F %t:%T' "$NULL_DEVICE" 2>/dev/null)" = "character special file 1:3" ] && return
    local found
    found=$(stat -c '%F %t:%T' "$NULL_DEVICE" 2>/dev/null || echo missing)
    [ "$REPAIR_DEV_NULL" = 1 ] ||
        die "$NULL_DEVICE is not the character device 1:3 (it is: $found); munged cannot start. Run \`$0 up --repair-dev-null\` to recreate it"
    say "$NULL_DEVICE is not the character device 1:3 ($found); recreating it"
    # made aside and renamed over it: a process writing to /dev/null meanwhile would
    # otherwise recreate the plain file between an rm and the mknod
    rm -f "$NULL_DEVICE.bnexp" && mknod -m 666 "$NULL_DEVICE.bnexp" c 1 3 && mv -f "$NULL_DEVICE.bnexp" "$NULL_DEVICE"
}

remove_own_policy() {  # our policy-rc.d, if it is still ours (a trap runs this on every exit)
    [ "$(cat "$POLICY_RC" 2>/dev/null)" = "$POLICY_TEXT" ] && rm -f "$POLICY_RC"
    return 0
}
POLICY_TEXT=$(printf '#!/bin/sh\n# scripts/slurm.sh: no services started while it installs packages\nexit 101')

install_packages() {
    local wanted=("${PACKAGES[@]}") missing=() pkg
    [ "$ACCOUNTING" = 1 ] && wanted+=("${DB_PACKAGES[@]}")
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
    say "installing ${missing[*]}"
    local start=$SECONDS
    # A fresh machine's package list may be empty or stale: update once first.
    apt-get update -q >/dev/null
    # The packages would start their system services (munge, mariadb, slurm*) with the
    # system's configuration, and leave them running; a policy-rc.d that says "no" (101)
    # keeps them off for the installation. (Only ours, if the machine had none.) Left behind,
    # it would keep every later apt run on this machine from starting its services: a trap
    # removes it however this script ends (an error, Ctrl-C, SIGTERM).
    if [ ! -e "$POLICY_RC" ]; then
        trap remove_own_policy EXIT
        trap 'remove_own_policy; exit 130' INT TERM HUP
        echo "$POLICY_TEXT" > "$POLICY_RC" && chmod 755 "$POLICY_RC"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
        >/dev/null || die "apt-get install ${missing[*]} failed"
    remove_own_policy
    say "installed in $((SECONDS - start))s"
}

# --------------------------------------------------------------------------- configuration
write_config() {
    local host cpus mem_mb real_mb
    host=$(hostname -s)
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    # slurmd drains a node that has less memory than configured: leave the OS a tenth.
    real_mb=$((mem_mb * 9 / 10))
    cat > "$DIR/slurm.conf" <<EOF
# Written by scripts/slurm.sh for $host: one node, $cpus CPUs, ${real_mb} MB for jobs.
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
# A requeued job waits this long before it may start again (default 120 s); short here,
# so that a preempted job continues within seconds.
AuthInfo=cred_expire=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups in a container: track processes by parent PID, do not bind them to CPUs.
# (So a job is not confined to its CPUs: bnexp reads SLURM_CPUS_PER_TASK for its threads.)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# CPUs and memory are what jobs ask for; a job without --mem gets its CPUs' share.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$((real_mb / cpus))
SchedulerType=sched/backfill
# Look at pending jobs every 2 s (default 60 s), so that a requeued job starts again at
# once when its cred_expire wait is over.
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
# Requeued jobs (submitit's checkpoint-and-requeue, scontrol requeue) may run again at once.
JobRequeue=1
# Seconds between SIGTERM and SIGKILL when a job is cancelled, preempted or out of time.
KillWait=30
# How long a finished job stays visible to squeue/scontrol (sacct keeps it for good).
MinJobAge=300
EOF
    if [ "$ACCOUNTING" = 1 ]; then
        cat >> "$DIR/slurm.conf" <<EOF
# Accounting through slurmdbd (and MariaDB), as on real clusters: sacct works, and
# submitit learns from it that a job ended without writing its result (killed, failed node).
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$host
JobAcctGatherType=jobacct_gather/none
EOF
        local password
        password=$(awk -F= '/^StoragePass=/ {print $2}' "$DIR/slurmdbd.conf" 2>/dev/null || true)
        [ -n "$password" ] || password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
        # slurmdbd reads slurmdbd.conf beside slurm.conf; it holds a password: root only.
        ( umask 077; cat > "$DIR/slurmdbd.conf" <<EOF
# Written by scripts/slurm.sh: slurmdbd stores accounting in a MariaDB of its own.
AuthType=auth/munge
DbdHost=$host
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$password
StorageLoc=slurm_acct_db
EOF
        )
    else
        echo "AccountingStorageType=accounting_storage/none" >> "$DIR/slurm.conf"
    fi
    echo "NodeName=$host CPUs=$cpus RealMemory=$real_mb State=UNKNOWN" >> "$DIR/slurm.conf"
    echo "PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP" >> "$DIR/slurm.conf"
}

# ------------------------------------------------------------------------------- daemons
start_munged() {
    local pid
    pid=$(cat /run/munge/munged.pid 2>/dev/null || true)
    if alive "$pid" munged; then
        [ -n "$(recorded_pid munged)" ] || say "munged already runs (pid $pid, not started here: left running by down)"
        return
    fi
    # munged refuses to start when its folders belong to someone else (or are writable by
    # others), and warns about its log folder's ownership.
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
    chmod 0755 /run/munge
    chmod 0700 /var/log/munge /var/lib/munge /etc/munge
    [ -f /etc/munge/munge.key ] || runuser -u munge -- mungekey --create >/dev/null
    runuser -u munge -- /usr/sbin/munged
    wait_for 10 munged test -S /run/munge/munge.socket.2
    record munged "$(cat /run/munge/munged.pid)"
}

start_database() {
    # A database of its own (own folder, socket and port): a MariaDB of the machine, if
    # any, is left alone. Its folder belongs to the mysql user, who writes the socket,
    # PID file and log there.
    local db=$DB_DIR pid password
    make_db_folder
    pid=$(recorded_pid mariadbd)
    if ! alive "$pid" mariadbd; then
        if [ ! -d "$db/data/mysql" ]; then
            mariadb-install-db --user=mysql --datadir="$db/data" --skip-test-db \
                > "$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed (see $DIR/log/mariadb-install.log)"
        fi
        mariadbd --user=mysql --datadir="$db/data" --socket="$db/mysqld.sock" --port="$DB_PORT" \
            --bind-address=127.0.0.1 --pid-file="$db/mariadbd.pid" --log-error="$db/mariadb.log" \
            --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
        record mariadbd $!
        wait_for 60 "mariadbd (log: $db/mariadb.log)" mariadb-admin --socket="$db/mysqld.sock" ping
    fi
    password=$(awk -F= '/^StoragePass=/ {print $2}' "$DIR/slurmdbd.conf")
    # On standard input, not the command line (every user can read a command line in /proc).
    # No anonymous accounts: a database made before --skip-auth-anonymous-user loses them.
    mariadb --socket="$db/mysqld.sock" <<EOF
DELETE FROM mysql.global_priv WHERE User = '';
FLUSH PRIVILEGES;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$password';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$password';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
    start_daemon slurmdbd && wait_for 30 slurmdbd sacctmgr -n list cluster
    # The cluster must be known to the database before slurmctld registers with it.
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
}

node_idle() {
    [ "$(sinfo -h -n "$(hostname -s)" -o %t 2>/dev/null)" = idle ]
}

start_daemon() {  # start_daemon NAME: start it unless the one `up` recorded still runs;
                  # record its PID (from the PID file its config names). False if it ran already.
    local pid
    pid=$(recorded_pid "$1")
    alive "$pid" "$1" && return 1
    rm -f "$DIR/$1.pid"
    "$1"
    wait_for 10 "$1's PID file" test -s "$DIR/$1.pid"
    record "$1" "$(cat "$DIR/$1.pid")"
}

start_slurm() {
    start_daemon slurmctld && wait_for 30 slurmctld scontrol ping
    start_daemon slurmd || true
    wait_for 60 "the node (idle in sinfo)" node_idle
}

pids_of() {  # the PIDs of the processes running program NAME (no procps needed)
    local proc
    for proc in /proc/[0-9]*; do
        [ "$(cat "$proc/comm" 2>/dev/null)" = "$1" ] && echo "${proc#/proc/}"
    done
    return 0
}

foreign_daemons() {  # SLURM daemons running that this script did not start
    local name pid ours parent
    for name in slurmctld slurmd slurmdbd; do
        ours=$(recorded_pid "$name")
        for pid in $(pids_of "$name"); do
            # the daemons fork short-lived helpers of their own name: those are ours too
            parent=$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null || true)
            if [ -z "$ours" ] || { [ "$pid" != "$ours" ] && [ "$parent" != "$ours" ]; }; then
                echo "$name (pid $pid)"
            fi
        done
    done
}

up() {
    [ "$(id -u)" = 0 ] || die "needs root (it installs packages and starts system daemons)"
    local start=$SECONDS foreign
    make_state_folder
    check_dev_null
    install_packages
    foreign=$(foreign_daemons)
    if [ -n "$foreign" ]; then
        # a daemon that has just daemonized leaves its launching processes for a moment
        # (seen: `up` right after `up`): only what is still there a second later counts
        sleep 1
        foreign=$(foreign_daemons)
    fi
    [ -z "$foreign" ] || die "SLURM daemons not started by this script are running: $foreign. Stop them first."
    write_config
    start_munged
    [ "$ACCOUNTING" = 1 ] && start_database
    start_slurm
    say "up in $((SECONDS - start))s: partition '$PARTITION' on $(hostname -s), $(nproc) CPUs" \
        "$( [ "$ACCOUNTING" = 1 ] && echo "(with accounting)")"
    say "clients need: export SLURM_CONF=$SLURM_CONF"
}

stop_pid() {  # stop_pid NAME PID: TERM, then KILL after 20 s
    local name=$1 pid=$2 waited=0
    alive "$pid" "$name" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid" "$name"; do
        if [ $waited -ge 100 ]; then
            say "$name (pid $pid) ignored SIGTERM for 20s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    say "stopped $name (pid $pid)"
}

down() {
    [ -e "$DIR" ] || { say "nothing to stop (no $DIR)"; return; }
    check_folder "$DIR" root  # it names the PIDs to kill
    [ -f "$DIR/pids" ] || { say "nothing to stop (no $DIR/pids)"; return; }
    # Jobs first: a running job's slurmstepd would outlive slurmd.
    if alive "$(recorded_pid slurmctld)" slurmctld && [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
        scancel --full --quiet $(squeue -h -o %i) 2>/dev/null || true
        local deadline=$((SECONDS + 40))
        while [ -n "$(squeue -h -o %i 2>/dev/null)" ] && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
    fi
    local name
    for name in slurmd slurmctld slurmdbd mariadbd munged; do  # the reverse of `up`
        stop_pid "$name" "$(recorded_pid "$name")"
    done
    rm -f "$DIR/pids"
}

status() {
    local name pid running=0
    [ ! -e "$DIR" ] || check_folder "$DIR" root
    for name in munged mariadbd slurmdbd slurmctld slurmd; do
        pid=$(recorded_pid "$name")
        if alive "$pid" "$name"; then echo "$name: running (pid $pid)"; running=1
        else echo "$name: not running${pid:+ (recorded pid $pid)}"; fi
    done
    [ $running = 1 ] && sinfo 2>/dev/null || true
    node_idle || [ -n "$(squeue -h 2>/dev/null)" ]
}

case "${1:-} ${2:-}" in
    "up ") up ;;
    "up --repair-dev-null") REPAIR_DEV_NULL=1; up ;;
    "down ") down ;;
    "status ") status ;;
    "env ") echo "export SLURM_CONF=$SLURM_CONF" ;;
    *) echo "usage: $0 up [--repair-dev-null] | down | status | env" >&2; exit 2 ;;
esac
