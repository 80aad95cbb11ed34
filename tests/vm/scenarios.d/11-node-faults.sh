# Node faults on the real kernel: the NVMe target going away under a running writer, the node
# plugin killed (with volumes mounted, and in the middle of a NodeStage) and restarted, and a
# mini-soak of stage/publish cycles with port blips that must leave nothing behind.
# Sourced by /scenario.sh (busybox ash): uses its helpers (csi, port_down/port_up, ctrls_of,
# mount_count, io_works, ...) and counters. Restarts go through /usr/bin/start-driver (written
# by /init) so the plugin comes back with the same arguments; DRIVER_PID follows the new process.

NF=/tmp/nf
mkdir -p "$NF"
NF_BASE=$K/plugins/kubernetes.io/csi/rds.csi.srvlab.io

# nf_paths TAG : staging and publish paths of one volume of this file.
nf_paths() {
    NF_STAGE=$NF_BASE/nf-$1/globalmount
    NF_PUB=$K/pods/pod-nf-$1/volumes/kubernetes.io~csi/pvc-vm-nf-$1/mount
    mkdir -p "$NF_STAGE" "$(dirname "$NF_PUB")"
}
# nf_create TAG : an ext4 volume; sets NF_VOL, NF_NQN, NF_CTX.
nf_create() {
    csi "nf.create.$1" create-volume --name "pvc-vm-nf-$1" --size 1Gi --fs-type ext4 || return 1
    NF_VOL=$(jqf "nf.create.$1" .volume.volume_id); NF_NQN=$(jqf "nf.create.$1" .volume.volume_context.nqn)
    NF_CTX=$(ctx_args "nf.create.$1")
}
# shellcheck disable=SC2086
nf_stage() { csi "nf.stage.$1" node-stage "$NF_VOL" --staging-path "$NF_STAGE" --fs-type ext4 $NF_CTX; }
# shellcheck disable=SC2086
nf_publish() { csi "nf.pub.$1" node-publish "$NF_VOL" --staging-path "$NF_STAGE" --target-path "$NF_PUB" --fs-type ext4 $NF_CTX; }
nf_unpublish() { csi "nf.unpub.$1" node-unpublish "$NF_VOL" --target-path "$NF_PUB"; }
nf_unstage() { csi "nf.unstage.$1" node-unstage "$NF_VOL" --staging-path "$NF_STAGE"; }
nf_ctrl_count() { ctrls_of "$1" | wc -l; }
# Nothing of the volume left on this node: no mount at either path, no controller, no target.
nf_clean() { [ "$(mount_count "$NF_STAGE")" = 0 ] && [ "$(mount_count "$NF_PUB")" = 0 ] && [ -z "$(ctrls_of "$NF_NQN")" ] && [ ! -e "$NF_PUB" ]; }
nf_where() { echo "stage mounts=$(mount_count "$NF_STAGE") pub mounts=$(mount_count "$NF_PUB") controllers=$(ctrls_of "$NF_NQN" | tr '\n' ' ')"; }
# nf_teardown TAG : unpublish, unstage, delete; true when all succeeded and nothing is left.
nf_teardown() {
    nf_unpublish "$1"; a=$?
    nf_unstage "$1"; b=$?
    nf_clean; c=$?
    csi "nf.delete.$1" delete-volume "$NF_VOL"; d=$?
    [ $a = 0 ] && [ $b = 0 ] && [ $c = 0 ] && [ $d = 0 ]
}
nf_rw() { # mount point -> "rw" or "ro" from the mount's own options
    awk -v p="$1" '$5 == p { split($6, o, ","); print o[1] }' /proc/self/mountinfo | tail -n1
}
nf_kernel_log() { # what the initiator said lately (nvme lines of dmesg), for the console
    dmesg 2>/dev/null | grep -i 'nvme' | tail -n "${1:-6}" | while read -r l; do log "  kernel: $l"; done
}

# nf_kill_driver : what a container kill does: the plugin and every process it started (mkfs,
# blkid, ...) die at once with SIGKILL. The plugin is stopped first so it cannot start more.
nf_kill_driver() {
    local pid=$DRIVER_PID kids
    kill -STOP "$pid" 2>/dev/null
    kids=$(awk -v p="$pid" '$4 == p { print $1 }' /proc/[0-9]*/stat 2>/dev/null)
    NF_KILLED_KIDS=""
    for k in $kids; do
        NF_KILLED_KIDS="$NF_KILLED_KIDS $(cat "/proc/$k/comm" 2>/dev/null)"
        kill -KILL "$k" 2>/dev/null
    done
    kill -KILL "$pid" 2>/dev/null
    i=0
    while [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
        i=$((i+1)); [ $i -lt 100 ] || return 1; sleep 0.1
    done
}
# nf_restart_driver : start-driver again; sets DRIVER_PID and NF_RESTART_S (to the socket).
nf_restart_driver() {
    local t0
    t0=$(up)
    start-driver || return 1
    DRIVER_PID=$(cat /run/driver.pid)
    NF_RESTART_S=$(since "$t0")
    # Node RPCs wait for the plugin's startup pass; a probe makes sure the gRPC server answers.
    i=0; until csi nf.probe probe; do i=$((i+1)); [ $i -lt 20 ] || return 1; sleep 0.5; done
}

# ======================================================= 1. target outage during writes
# A writer writes 256 KiB files with fsync (each with its checksum noted once dd returned 0)
# while the port disappears for OUTAGE seconds. Afterwards every write that reported success
# must read back identically from the device (page cache dropped), the filesystem must still be
# mounted read-write and take writes, without a re-stage.
nf_writer() { # dir : until $NF/stop exists; one line per write: i md5 start end rc
    local i=0 sum t0 rc
    while [ ! -e "$NF/stop" ]; do
        i=$((i+1))
        dd if=/dev/urandom of="$NF/chunk" bs=64k count=4 2>/dev/null
        sum=$(md5sum < "$NF/chunk" | cut -d' ' -f1)
        t0=$(up)
        dd if="$NF/chunk" of="$1/w$i.bin" bs=64k conv=fsync 2>/dev/null; rc=$?
        echo "$i $sum $t0 $(up) $rc" >> "$NF/writes"
        sleep 0.2
    done
}
nf_paths w
if nf_create w && nf_stage w && nf_publish w; then
    W_DEV=$(dev_of "$NF_NQN"); W_CTRL=$(ctrls_of "$NF_NQN" | head -n1)
    echo "nf marker" > "$NF_PUB/marker.txt" && sync
    rm -f "$NF/stop" "$NF/writes"
    nf_writer "$NF_PUB" &
    W_PID=$!
    sleep 3
    t_down=$(up)
    if port_down; then
        log "fault 1: port $PORT down for ${OUTAGE}s under a writer (controller $W_CTRL, /dev/$W_DEV)"
        sleep "$OUTAGE"
        during=$(state_of "$W_CTRL")
        port_up; t_up=$(up)
        # Let the writer run until a write that started after the port came back has finished.
        i=0
        while [ $i -lt 900 ]; do
            awk -v u="$t_up" '$3 > u { f = 1 } END { exit !f }' "$NF/writes" 2>/dev/null && break
            sleep 0.1; i=$((i+1))
        done
        sleep 2
        touch "$NF/stop"
        i=0; while kill -0 "$W_PID" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
        writer_done=$(kill -0 "$W_PID" 2>/dev/null && echo "still running" || echo finished)
        [ "$writer_done" = finished ] && wait "$W_PID"
        nf_kernel_log 6
        sync; echo 3 > /proc/sys/vm/drop_caches
        bad=""
        while read -r n sum _ _ rc; do
            [ "$rc" = 0 ] || continue
            [ "$(md5sum < "$NF_PUB/w$n.bin" 2>/dev/null | cut -d' ' -f1)" = "$sum" ] || bad="$bad w$n"
        done < "$NF/writes"
        summary=$(awk -v d="$t_down" -v u="$t_up" '
            { dur = $4 - $3; if (dur > max) max = dur
              if ($5 != 0) failed++
              else if ($4 < d) before++
              else if ($3 > u) after++
              else during++ }
            END { printf "%d before, %d spanning the outage, %d after, %d failed; longest write %.1fs",
                  before, during, after, failed, max }' "$NF/writes")
        longest=$(awk '{ d = $4 - $3; if (d > m) m = d } END { printf "%.1f", m }' "$NF/writes")
        before=$(awk -v d="$t_down" '$5 == 0 && $4 < d' "$NF/writes" | wc -l)
        after=$(awk -v u="$t_up" '$5 == 0 && $3 > u' "$NF/writes" | wc -l)
        timing nf.outage-writes.longest-write "$longest" "a synced 256 KiB write blocked across the ${OUTAGE}s outage (controller $during during it)"
        rw=$(nf_rw "$NF_STAGE")
        if [ "$writer_done" = finished ] && [ -z "$bad" ] && [ "$before" -gt 0 ] && [ "$after" -gt 0 ] \
           && [ "$rw" = rw ] && io_works "$NF_PUB" 20 && [ "$(mount_source "$NF_STAGE")" = "/dev/$W_DEV" ]; then
            pass node.fault.outage-during-writes "$summary; every acknowledged write reads back; still rw on /dev/$W_DEV, no re-stage"
        else
            fail node.fault.outage-during-writes "writer $writer_done; corrupt:${bad:- none}; $summary; mount $rw source $(mount_source "$NF_STAGE") (was /dev/$W_DEV)"
        fi
    else
        touch "$NF/stop"; wait "$W_PID" 2>/dev/null
        fail node.fault.outage-during-writes "could not take port $PORT down"
    fi

    # ======================================================= 2. plugin restarted with mounts
    # The same volume, still staged and published with the writer's files on it, and a block
    # volume published as a device node with a known pattern on it.
    t_ctrls=$(ctrls_of "$NF_NQN" | tr '\n' ' ')
    files=$(ls "$NF_PUB" | wc -l)
    NB_STAGE=$NF_BASE/nf-b/globalmount
    NB_PUB=$K/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-vm-nf-b/pod-nf-b
    mkdir -p "$NB_STAGE" "$(dirname "$NB_PUB")"
    nb=no
    if csi nf.create.b create-volume --name pvc-vm-nf-b --size 1Gi --block; then
        NB_VOL=$(jqf nf.create.b .volume.volume_id); NB_NQN=$(jqf nf.create.b .volume.volume_context.nqn)
        NB_CTX=$(ctx_args nf.create.b)
        dd if=/dev/urandom of="$NF/pattern" bs=64k count=16 2>/dev/null
        # shellcheck disable=SC2086
        csi nf.stage.b node-stage "$NB_VOL" --staging-path "$NB_STAGE" --block $NB_CTX \
            && csi nf.pub.b node-publish "$NB_VOL" --staging-path "$NB_STAGE" --target-path "$NB_PUB" --block $NB_CTX \
            && dd if="$NF/pattern" of="$NB_PUB" bs=64k conv=fsync 2>/dev/null && nb=yes
        nb_ctrls=$(ctrls_of "$NB_NQN" | tr '\n' ' ')
    fi
    nb_reads() { dd if="$NB_PUB" of="$NF/readback" bs=64k count=16 iflag=direct 2>/dev/null && cmp -s "$NF/pattern" "$NF/readback"; }
    if nf_kill_driver; then
        nb_down=$(nb_reads && echo yes || echo no)
        old_pid=$DRIVER_PID
        down_io=$(io_works "$NF_PUB" 10 && echo yes || echo no)
        if nf_restart_driver; then
            timing nf.restart.socket "$NF_RESTART_S" "start-driver until the new socket answered (pid $old_pid -> $DRIVER_PID)"
            r1=ok; r2=""
            csi_twice nf.restage node-stage "$NF_VOL" --staging-path "$NF_STAGE" --fs-type ext4 $NF_CTX || r1="stage: $(err nf.restage)"
            csi_twice nf.republish node-publish "$NF_VOL" --staging-path "$NF_STAGE" --target-path "$NF_PUB" --fs-type ext4 $NF_CTX || r1="$r1 publish: $(err nf.republish)"
            if csi nf.restats node-stats "$NF_VOL" --volume-path "$NF_PUB"; then
                [ "$(jqf nf.restats '.volume_condition.abnormal // false')" = false ] || r2="stats abnormal: $(jqf nf.restats .volume_condition.message)"
            else
                r2="stats: $(err nf.restats)"
            fi
            now_ctrls=$(ctrls_of "$NF_NQN" | tr '\n' ' ')
            if [ "$r1" = ok ] && [ -z "$r2" ] && [ "$down_io" = yes ] \
               && [ "$(mount_count "$NF_STAGE")" = 1 ] && [ "$(mount_count "$NF_PUB")" = 1 ] \
               && [ "$now_ctrls" = "$t_ctrls" ] && [ "$(ls "$NF_PUB" | wc -l)" = "$files" ] \
               && io_works "$NF_PUB" 20; then
                pass node.fault.restart-with-mounts "I/O worked while the plugin was down; after restart stage+publish (each twice) kept one mount each and controller $now_ctrls; stats healthy; $files files intact"
            else
                fail node.fault.restart-with-mounts "$r1 $r2 io-while-down=$down_io controllers $t_ctrls -> $now_ctrls files $files -> $(ls "$NF_PUB" | wc -l) $(nf_where)"
            fi
            # shellcheck disable=SC2086
            if [ $nb = yes ] && [ "$nb_down" = yes ] \
               && csi_twice nf.restage.b node-stage "$NB_VOL" --staging-path "$NB_STAGE" --block $NB_CTX \
               && csi_twice nf.republish.b node-publish "$NB_VOL" --staging-path "$NB_STAGE" --target-path "$NB_PUB" --block $NB_CTX \
               && [ -b "$NB_PUB" ] && nb_reads && [ "$(ctrls_of "$NB_NQN" | tr '\n' ' ')" = "$nb_ctrls" ]; then
                pass node.fault.restart-with-block "device node read back the pattern while the plugin was down; after restart stage+publish (each twice) on the same controller $nb_ctrls, pattern intact"
            else
                fail node.fault.restart-with-block "setup=$nb read-while-down=${nb_down:-?} stage: $(err nf.restage.b) publish: $(err nf.republish.b) node: $(ls -l "$NB_PUB" 2>&1) controllers $nb_ctrls -> $(ctrls_of "$NB_NQN" | tr '\n' ' ')"
            fi
        else
            fail node.fault.restart-with-mounts "driver did not come back: $(tail -n 5 /var/log/driver.log | tr '\n' ' ' | cut -c1-300)"
        fi
    else
        fail node.fault.restart-with-mounts "driver pid $DRIVER_PID did not die"
    fi
    csi nf.unpub.b node-unpublish "$NB_VOL" --target-path "$NB_PUB"; b1=$?
    csi nf.unstage.b node-unstage "$NB_VOL" --staging-path "$NB_STAGE"; b2=$?
    b3=$([ ! -e "$NB_PUB" ] && [ -z "$(ctrls_of "$NB_NQN")" ] && echo clean || echo "left: $(ls -l "$NB_PUB" 2>&1) controllers $(ctrls_of "$NB_NQN" | tr '\n' ' ')")
    csi nf.delete.b delete-volume "$NB_VOL"; b4=$?
    if nf_teardown w && [ "$b1$b2$b4" = 000 ] && [ "$b3" = clean ]; then
        pass node.fault.restart.teardown "after the restart: unpublish (device node removed), unstage, disconnect and delete clean for both volumes"
    else
        fail node.fault.restart.teardown "fs: unpub: $(err nf.unpub.w) unstage: $(err nf.unstage.w) delete: $(err nf.delete.w) $(nf_where); block: $b1$b2$b4 $b3 $(err nf.unpub.b) $(err nf.unstage.b)"
    fi
else
    fail node.fault.outage-during-writes "setup: $(err nf.create.w) $(err nf.stage.w) $(err nf.pub.w)"
    fail node.fault.restart-with-mounts "no volume (see node.fault.outage-during-writes)"
fi

# ======================================================= 3. plugin killed in the middle of NodeStage
# Killed (with its children, as a container kill does) at a point of a fresh volume's NodeStage:
#   connect: right after the controller shows in sysfs (before the device is probed);
#   format:  while mkfs runs on the device (a half-written filesystem is left).
# Restarted, NodeStage retried as kubelet would: it completes with one mount on one controller
# and a filesystem that passes a read-only fsck.
nf_mkfs_running() { awk -v p="$DRIVER_PID" '$4 == p { print $2 }' /proc/[0-9]*/stat 2>/dev/null | grep -q 'mkfs\|mke2fs'; }
nf_kill_during() { # tag point
    local tag=$1 point=$2 name=node.fault.kill-mid-stage S_PID i reached at_kill dev s_rc after_restart
    [ "$point" = connect ] || name=$name.$point
    nf_paths "$tag"
    nf_create "$tag" || { fail "$name" "create: $(err "nf.create.$tag")"; return; }
    # shellcheck disable=SC2086
    csi "nf.kstage.$tag" node-stage "$NF_VOL" --staging-path "$NF_STAGE" --fs-type ext4 $NF_CTX &
    S_PID=$!
    i=0; reached=no
    while kill -0 "$S_PID" 2>/dev/null && [ $i -lt 1200 ]; do
        case $point in
            connect) [ -n "$(ctrls_of "$NF_NQN")" ] && { reached=yes; break; } ;;
            format) nf_mkfs_running && { reached=yes; break; } ;;
        esac
        sleep 0.02; i=$((i+1))
    done
    if [ $reached = yes ]; then
        nf_kill_driver
        dev=$(dev_of "$NF_NQN")
        at_kill="killed at $point with controller $(ctrls_of "$NF_NQN" | tr '\n' ' ')/${dev:-no device yet}, $(mount_count "$NF_STAGE") mounts, fs '$(blkid -o value -s TYPE "/dev/$dev" 2>/dev/null)', children killed:${NF_KILLED_KIDS:- none}"
        wait "$S_PID"; s_rc=$?
        log "fault 3 ($point): $at_kill; interrupted NodeStage exit $s_rc: $(err "nf.kstage.$tag")"
        if nf_restart_driver; then
            after_restart="after restart $(nf_ctrl_count "$NF_NQN") controller(s)"
            # shellcheck disable=SC2086
            if nf_stage "$tag.2" && csi_twice "nf.kstage3.$tag" node-stage "$NF_VOL" --staging-path "$NF_STAGE" --fs-type ext4 $NF_CTX \
               && [ "$(mount_count "$NF_STAGE")" = 1 ] && [ "$(nf_ctrl_count "$NF_NQN")" = 1 ] \
               && dev=$(dev_of "$NF_NQN") && [ "$(mount_source "$NF_STAGE")" = "/dev/$dev" ] \
               && blkid "/dev/$dev" | grep -q 'TYPE="ext4"' \
               && nf_publish "$tag" && echo "$tag" > "$NF_PUB/marker.txt" && io_works "$NF_PUB" 20; then
                # Off the node again, the filesystem the retry mounted must be consistent:
                # connected raw with nvme-cli, checked read-only, disconnected.
                nf_unpublish "$tag"; nf_unstage "$tag"
                nvme connect -t tcp -a 127.0.0.1 -s "$PORT" -n "$NF_NQN" > /dev/null 2>&1
                if dev=$(wait_dev "$NF_NQN" 15) && e2fsck -fn "/dev/$dev" > "$NF/fsck.$tag" 2>&1; then
                    pass "$name" "$at_kill; $after_restart; retried NodeStage (x3): one mount, one controller, ext4, publish writable, e2fsck -fn clean"
                else
                    fail "$name" "$at_kill; $after_restart; retry mounted, but e2fsck -fn on '$dev': $(tail -n 4 "$NF/fsck.$tag" | tr '\n' ' ')"
                fi
                nvme disconnect -n "$NF_NQN" > /dev/null 2>&1
            else
                fail "$name" "$at_kill; $after_restart; retry: $(err "nf.stage.$tag.2") $(err "nf.kstage3.$tag") $(nf_where)"
            fi
        else
            fail "$name" "driver did not come back"
        fi
    else
        wait "$S_PID"
        fail "$name" "the stage never reached '$point' while it ran: $(err "nf.kstage.$tag")"
    fi
    nf_teardown "$tag" || fail "$name.teardown" "unpub: $(err "nf.unpub.$tag") unstage: $(err "nf.unstage.$tag") delete: $(err "nf.delete.$tag") $(nf_where)"
}
nf_kill_during k connect
nf_kill_during f format

# ======================================================= 4. mini-soak
# SOAK_CYCLES stage/publish/write/unpublish/unstage cycles on one volume, with a port blip while
# published every tenth cycle; afterwards the plugin's fds and threads are back to what they
# were after one warm-up cycle, and no mount or controller is left.
SOAK_CYCLES=${SOAK_CYCLES:-30}
nf_fds() { ls "/proc/$DRIVER_PID/fd" 2>/dev/null | wc -l; }
nf_threads() { awk '/^Threads:/ { print $2 }' "/proc/$DRIVER_PID/status"; }
nf_rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$DRIVER_PID/status"; }
nf_cycle() { # n blip : on failure the reason is in $NF/why
    nf_stage "s$1" || { echo "stage: $(err "nf.stage.s$1")" > "$NF/why"; return 1; }
    nf_publish "s$1" || { echo "publish: $(err "nf.pub.s$1")" > "$NF/why"; return 1; }
    [ "$(cat "$NF_PUB/marker.txt" 2>/dev/null)" = "soak" ] || { echo "marker lost" > "$NF/why"; return 1; }
    if [ "$2" = yes ]; then
        port_down || { echo "port down failed" > "$NF/why"; return 1; }
        sleep 2; port_up
        NF_BLIPS=$((NF_BLIPS+1))
    fi
    io_works "$NF_PUB" 30 || { echo "no I/O within 30 s (blip: $2)" > "$NF/why"; return 1; }
    nf_unpublish "s$1" || { echo "unpublish: $(err "nf.unpub.s$1")" > "$NF/why"; return 1; }
    nf_unstage "s$1" || { echo "unstage: $(err "nf.unstage.s$1")" > "$NF/why"; return 1; }
    nf_clean || { echo "left behind: $(nf_where)" > "$NF/why"; return 1; }
}
nf_paths s
if nf_create s && nf_stage s0 && nf_publish s0 && echo soak > "$NF_PUB/marker.txt" && sync \
   && nf_unpublish s0 && nf_unstage s0; then
    all_ctrls0=$(ls /sys/class/nvme 2>/dev/null | wc -l)
    sleep 2
    fd0=$(nf_fds); th0=$(nf_threads); rss0=$(nf_rss)
    t0=$(up); n=0; NF_BLIPS=0; why=""
    while [ $n -lt "$SOAK_CYCLES" ]; do
        n=$((n+1))
        blip=no; [ $((n % 10)) = 5 ] && blip=yes
        nf_cycle "$n" "$blip" || { why="cycle $n: $(cat "$NF/why")"; break; }
    done
    soak_s=$(since "$t0")
    timing nf.soak.cycle "$(awk -v t="$soak_s" -v n="$n" 'BEGIN { printf "%.2f", t / n }')" "mean of $n stage/publish/write/unpublish/unstage cycles ($NF_BLIPS with a 2 s port blip)"
    # Idle blocking-pool threads and closed client connections take a moment to go.
    i=0
    while [ $i -lt 60 ]; do
        [ "$(nf_fds)" -le "$fd0" ] && [ "$(nf_threads)" -le "$th0" ] && break
        sleep 1; i=$((i+1))
    done
    fd1=$(nf_fds); th1=$(nf_threads); rss1=$(nf_rss)
    timing nf.soak.rss-kib "$rss1" "plugin VmRSS after the soak (before: ${rss0} KiB)"
    leaked_mounts=$(awk -v k="$K/" 'index($5, k) == 1' /proc/self/mountinfo | wc -l)
    all_ctrls1=$(ls /sys/class/nvme 2>/dev/null | wc -l)
    if [ -z "$why" ] && [ "$fd1" -le "$fd0" ] && [ "$th1" -le "$th0" ] && [ "$leaked_mounts" = 0 ] \
       && [ "$all_ctrls1" -le "$all_ctrls0" ]; then
        pass node.fault.mini-soak "$n cycles ($NF_BLIPS port blips) in ${soak_s}s; fds $fd0 -> $fd1, threads $th0 -> $th1, RSS ${rss0} -> ${rss1} KiB; no mounts under $K, controllers $all_ctrls0 -> $all_ctrls1"
    else
        fail node.fault.mini-soak "${why:-all $n cycles ok}; fds $fd0 -> $fd1, threads $th0 -> $th1, mounts under $K: $leaked_mounts, controllers $all_ctrls0 -> $all_ctrls1"
    fi
    nf_unpublish s9; nf_unstage s9
    csi nf.delete.s delete-volume "$NF_VOL" || fail node.fault.mini-soak.delete "$(err nf.delete.s)"
else
    fail node.fault.mini-soak "setup: $(err nf.create.s) $(err nf.stage.s0) $(err nf.pub.s0)"
fi
