# NVMe/TCP multipath on the real kernel (issue #18, docs/multipath.md): the simulator exports
# every disk on 127.0.0.1 and 127.0.0.2 (one nvmet port each, same TCP port, like an RDS's two
# interfaces); a volume staged with nvmeAddresses=127.0.0.1,127.0.0.2 is connected through both
# with one host identity and mounted from the subsystem's one multipath head. A writer issues
# synced writes while one port, then the other, then both are removed: no write may fail, the
# mount must stay, and the longest write is reported (TIMING mp.*.longest-write). Also: a path
# whose controller is deleted is re-added by the node without touching the mount, stage and
# unstage with one path down, and the kernel's multipath off (nvme_core.multipath=N) gives one
# path and a clear reason, never two block devices.
# Sourced by /scenario.sh (busybox ash): uses its helpers and counters.

MP=/tmp/mp
mkdir -p "$MP"
MP_OUTAGE=${MP_OUTAGE:-20}
MP_A1=127.0.0.1; MP_A2=127.0.0.2
MP_BASE=$K/plugins/kubernetes.io/csi/rds.csi.srvlab.io

mp_paths() { # TAG
    MP_STAGE=$MP_BASE/mp-$1/globalmount
    MP_PUB=$K/pods/pod-mp-$1/volumes/kubernetes.io~csi/pvc-vm-mp-$1/mount
    mkdir -p "$MP_STAGE" "$(dirname "$MP_PUB")"
}
mp_create() { # TAG : an ext4 volume; sets MP_VOL, MP_NQN, MP_CTX (both paths)
    csi "mp.create.$1" create-volume --name "pvc-vm-mp-$1" --size 1Gi --fs-type ext4 || return 1
    MP_VOL=$(jqf "mp.create.$1" .volume.volume_id); MP_NQN=$(jqf "mp.create.$1" .volume.volume_context.nqn)
    # The controller may already write nvmeAddresses; this names both paths either way.
    MP_CTX="$(ctx_args "mp.create.$1" | grep -v '^--context=nvmeAddresses=') --context=nvmeAddresses=$MP_A1,$MP_A2"
}
# shellcheck disable=SC2086
mp_stage() { csi "mp.stage.$1" node-stage "$MP_VOL" --staging-path "$MP_STAGE" --fs-type ext4 $MP_CTX; }
# shellcheck disable=SC2086
mp_publish() { csi "mp.pub.$1" node-publish "$MP_VOL" --staging-path "$MP_STAGE" --target-path "$MP_PUB" --fs-type ext4 $MP_CTX; }
mp_stats() { csi "mp.stats.$1" node-stats "$MP_VOL" --volume-path "$MP_PUB"; }
mp_abnormal() { jqf "mp.stats.$1" '.volume_condition.abnormal // false'; }
mp_message() { jqf "mp.stats.$1" '.volume_condition.message // ""'; }
mp_ctrl_at() { # nqn addr -> controller names at that address
    for c in $(ctrls_of "$1"); do
        grep -q "traddr=$2," "/sys/class/nvme/$c/address" 2>/dev/null && echo "$c"
    done
}
mp_live_at() { # nqn addr : a live controller at that address
    for c in $(mp_ctrl_at "$1" "$2"); do [ "$(state_of "$c")" = live ] && return 0; done; return 1
}
mp_both_live() { mp_live_at "$1" $MP_A1 && mp_live_at "$1" $MP_A2; }
mp_wait() { # seconds command... : polls until the command succeeds
    local n=$(($1 * 10)); shift
    i=0; while [ $i -lt $n ]; do "$@" && return 0; sleep 0.1; i=$((i+1)); done; return 1
}
mp_states() { # nqn -> "nvme1@127.0.0.1=live nvme2@127.0.0.2=connecting"
    for c in $(ctrls_of "$1"); do
        printf '%s@%s=%s ' "$c" "$(sed 's/.*traddr=\([^,]*\),.*/\1/' "/sys/class/nvme/$c/address")" "$(state_of "$c")"
    done
}
mp_blockdevs() { # nqn -> every block device with a /dev node that belongs to the NQN
    for b in /sys/class/block/nvme*; do
        n=${b##*/}; [ -e "/dev/$n" ] || continue
        o=$(cat "$b/../subsysnqn" 2>/dev/null) || continue
        [ "$o" = "$1" ] && echo "$n"
    done
}
mp_writer() { # dir : synced 256 KiB writes until $MP/stop; one line each: i md5 start end rc
    local i=0 sum t0 rc
    while [ ! -e "$MP/stop" ]; do
        i=$((i+1))
        dd if=/dev/urandom of="$MP/chunk" bs=64k count=4 2>/dev/null
        sum=$(md5sum < "$MP/chunk" | cut -d' ' -f1)
        t0=$(up)
        dd if="$MP/chunk" of="$1/w$i.bin" bs=64k conv=fsync 2>/dev/null; rc=$?
        echo "$i $sum $t0 $(up) $rc" >> "$MP/writes"
        sleep 0.05
    done
}
mp_writer_start() { rm -f "$MP/stop" "$MP/writes"; mp_writer "$MP_PUB" & MP_WPID=$!; }
mp_writer_stop() {
    touch "$MP/stop"
    i=0; while kill -0 "$MP_WPID" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
    kill -0 "$MP_WPID" 2>/dev/null && return 1
    wait "$MP_WPID"; return 0
}
# mp_verify : every acknowledged write reads back (page cache dropped); sets MP_BAD, MP_FAILED.
mp_verify() {
    sync; echo 3 > /proc/sys/vm/drop_caches
    MP_BAD=""
    while read -r n sum _ _ rc; do
        [ "$rc" = 0 ] || continue
        [ "$(md5sum < "$MP_PUB/w$n.bin" 2>/dev/null | cut -d' ' -f1)" = "$sum" ] || MP_BAD="$MP_BAD w$n"
    done < "$MP/writes"
    MP_FAILED=$(awk '$5 != 0' "$MP/writes" | wc -l)
}
# mp_longest FROM TO : longest write that overlapped [FROM, TO] (uptime seconds)
mp_longest() {
    awk -v a="$1" -v b="$2" '$4 >= a && $3 <= b { d = $4 - $3; if (d > m) m = d } END { printf "%.2f", m }' "$MP/writes"
}
mp_count() { awk -v a="$1" -v b="$2" '$4 >= a && $3 <= b' "$MP/writes" | wc -l; }

# mp_failover NAME ADDRS... : removes the ports of ADDRS for the outage under the writer, then
# restores them; checks zero failed writes, data, same mount, all paths live again.
mp_failover() {
    local name=$1 t_down t_up during live_t cond_ok=yes cond="" a mount_before outage=$MP_OUTAGE
    shift
    [ $# -gt 1 ] && outage=$OUTAGE
    mount_before=$(mount_source "$MP_STAGE")
    mp_writer_start
    sleep 2
    t_down=$(up)
    for a in "$@"; do port_down "$a" || { fail "mp.$name" "could not take $a down"; mp_writer_stop; return 1; }; done
    log "multipath $name: port(s) $* removed for ${outage}s under a writer"
    sleep 4
    # Degraded: stats name the missing path(s) while the other carries the I/O.
    if [ $# = 1 ]; then
        if mp_stats "$name.during" && [ "$(mp_abnormal "$name.during")" = true ] \
           && mp_message "$name.during" | grep -q "$1:$PORT"; then
            cond="VolumeCondition abnormal: $(mp_message "$name.during" | cut -c1-160)"
        else
            cond_ok=no; cond="VolumeCondition during: $(mp_abnormal "$name.during") '$(mp_message "$name.during")' $(err "mp.stats.$name.during")"
        fi
    fi
    sleep $((outage - 4))
    during=$(mp_states "$MP_NQN")
    for a in "$@"; do port_up "$a"; done
    t_up=$(up)
    live_t=""
    mp_wait 60 mp_both_live "$MP_NQN" && live_t=$(since "$t_up")
    # Writes that start after the ports came back, then stop.
    sleep 2
    mp_writer_stop || { fail "mp.$name" "writer still blocked: $(mp_states "$MP_NQN")"; return 1; }
    mp_verify
    local longest n_during
    longest=$(mp_longest "$t_down" "$t_up")
    n_during=$(mp_count "$t_down" "$t_up")
    timing "mp.$name.longest-write" "$longest" "longest synced 256 KiB write while $* was down for ${outage}s ($n_during writes in the window; paths during: $during)"
    timing "mp.$name.paths-live" "${live_t:-never}" "both paths live again after the port(s) returned"
    if [ $# = 1 ] && mp_stats "$name.after" && [ "$(mp_abnormal "$name.after")" = false ]; then
        cond="$cond; healthy again after"
    elif [ $# = 1 ]; then
        # The condition is read live from sysfs: healthy as soon as both paths are.
        cond_ok=no; cond="$cond; after: $(mp_message "$name.after") $(err "mp.stats.$name.after")"
    fi
    if [ "$MP_FAILED" = 0 ] && [ -z "$MP_BAD" ] && [ -n "$live_t" ] && [ "$n_during" -gt 0 ] \
       && [ "$(mount_source "$MP_STAGE")" = "$mount_before" ] && [ "$(mount_count "$MP_STAGE")" = 1 ] \
       && [ "$cond_ok" = yes ] && io_works "$MP_PUB" 20; then
        pass "mp.$name" "0 of $(wc -l < "$MP/writes") writes failed ($n_during during the outage, longest ${longest}s), all read back; same mount $mount_before; both paths live ${live_t}s after; $cond"
    else
        fail "mp.$name" "failed=$MP_FAILED corrupt:${MP_BAD:- none} live_after=${live_t:-never} mount $(mount_source "$MP_STAGE") (was $mount_before) paths now: $(mp_states "$MP_NQN"); $cond"
    fi
}

MP_STAGED=no
mp_paths a
if mp_create a && mp_stage a && mp_publish a; then
    MP_STAGED=yes
    echo "mp marker" > "$MP_PUB/marker.txt" && sync
    mp_wait 20 mp_both_live "$MP_NQN"
    head=$(dev_of "$MP_NQN"); devs=$(mp_blockdevs "$MP_NQN" | tr '\n' ' ' | sed 's/ $//')
    if mp_both_live "$MP_NQN" && [ "$(ctrls_of "$MP_NQN" | wc -l)" = 2 ] \
       && [ -d "/sys/class/nvme-subsystem/$(basename "$(readlink -f "/sys/class/block/$head/..")")/$head" ] \
       && [ "$(mount_source "$MP_STAGE")" = "/dev/$head" ] && [ "$devs" = "$head" ]; then
        pass mp.stage "two controllers ($(mp_states "$MP_NQN")) with one host NQN, mounted from the multipath head /dev/$head, the only block device of the NQN"
    else
        fail mp.stage "paths: $(mp_states "$MP_NQN") head '$head' mount $(mount_source "$MP_STAGE") devices '$devs'"
    fi
    hn=$(for c in $(ctrls_of "$MP_NQN"); do cat "/sys/class/nvme/$c/hostnqn"; done | sort -u | wc -l)
    [ "$hn" = 1 ] || fail mp.stage.host-identity "controllers carry $hn host NQNs"
    if mp_stats healthy && [ "$(mp_abnormal healthy)" = false ]; then
        pass mp.stats.healthy "$(mp_message healthy)"
    else
        fail mp.stats.healthy "$(mp_message healthy) $(err mp.stats.healthy)"
    fi
    grep -q "paths" /var/log/driver.log || true

    mp_failover failover.second $MP_A2
    mp_failover failover.first $MP_A1
    mp_failover outage.both $MP_A1 $MP_A2

    # ---- a path deleted under the mount (what 6.12 does when a reconnect is answered "do not
    # retry"): the node's monitor connects it again; the head and the mount stay.
    c2=$(mp_ctrl_at "$MP_NQN" $MP_A2 | head -n1)
    src=$(mount_source "$MP_STAGE")
    if [ -n "$c2" ] && echo 1 > "/sys/class/nvme/$c2/delete_controller"; then
        t0=$(up)
        log "multipath: deleted the controller $c2 of path $MP_A2"
        if mp_wait 40 mp_both_live "$MP_NQN"; then
            readd=$(since "$t0")
            timing mp.path-readded "$readd" "the node reconnected the path whose controller was deleted (monitor pass)"
            if [ "$(mount_source "$MP_STAGE")" = "$src" ] && [ "$(mount_count "$MP_STAGE")" = 1 ] \
               && [ "$(cat "$MP_PUB/marker.txt")" = "mp marker" ] && io_works "$MP_PUB" 20; then
                pass mp.path-readded "$c2 deleted; path $MP_A2 back after ${readd}s ($(mp_states "$MP_NQN")), mount $src untouched"
            else
                fail mp.path-readded "mount $(mount_source "$MP_STAGE") (was $src) count $(mount_count "$MP_STAGE")"
            fi
        else
            fail mp.path-readded "not re-added within 40 s: $(mp_states "$MP_NQN")"
        fi
    else
        fail mp.path-readded "no controller at $MP_A2 to delete: $(mp_states "$MP_NQN")"
    fi

    # ---- unstage with one path down: every controller goes, live or reconnecting.
    if port_down $MP_A2; then
        sleep 2
        csi mp.unpub.a node-unpublish "$MP_VOL" --target-path "$MP_PUB"
        if csi mp.unstage.a node-unstage "$MP_VOL" --staging-path "$MP_STAGE" \
           && [ -z "$(ctrls_of "$MP_NQN")" ] && [ "$(mount_count "$MP_STAGE")" = 0 ]; then
            pass mp.unstage.one-down "unstaged with $MP_A2 down: no controller, no mount left"
            MP_STAGED=no
        else
            fail mp.unstage.one-down "$(err mp.unstage.a) paths: $(mp_states "$MP_NQN") mounts $(mount_count "$MP_STAGE")"
        fi
        port_up $MP_A2
    else
        fail mp.unstage.one-down "could not take $MP_A2 down"
    fi
else
    fail mp.stage "$(err mp.create.a) $(err mp.stage.a) $(err mp.pub.a)"
fi
if [ $MP_STAGED = yes ]; then
    csi mp.unpub.a2 node-unpublish "$MP_VOL" --target-path "$MP_PUB"
    csi mp.unstage.a2 node-unstage "$MP_VOL" --staging-path "$MP_STAGE"
fi
csi mp.delete.a delete-volume "$MP_VOL" > /dev/null 2>&1

# ---- stage with one path already down: succeeds on the other; the node connects the missing
# one in the background once it returns.
mp_paths b
if mp_create b && port_down $MP_A2; then
    if mp_stage b && mp_publish b && mp_live_at "$MP_NQN" $MP_A1 && [ -z "$(mp_ctrl_at "$MP_NQN" $MP_A2)" ]; then
        echo "mp marker b" > "$MP_PUB/marker.txt" && sync
        mp_stats b.down
        if [ "$(mp_abnormal b.down)" = true ] && mp_message b.down | grep -q "$MP_A2:$PORT"; then
            pass mp.stage.one-down "staged over $MP_A1 alone; VolumeCondition: $(mp_message b.down | cut -c1-160)"
        else
            fail mp.stage.one-down "condition: $(mp_abnormal b.down) '$(mp_message b.down)'"
        fi
        port_up $MP_A2; t0=$(up)
        if mp_wait 60 mp_both_live "$MP_NQN"; then
            timing mp.stage.one-down.path-added "$(since "$t0")" "the path missing at stage connected in the background after its port returned"
            mp_stats b.up
            if [ "$(mp_abnormal b.up)" = false ] && io_works "$MP_PUB" 20; then
                pass mp.stage.one-down.retried "path $MP_A2 connected $(since "$t0")s after it returned ($(mp_states "$MP_NQN")); healthy"
            else
                fail mp.stage.one-down.retried "condition '$(mp_message b.up)'"
            fi
        else
            fail mp.stage.one-down.retried "never connected: $(mp_states "$MP_NQN")"
        fi
    else
        fail mp.stage.one-down "$(err mp.stage.b) $(err mp.pub.b) paths: $(mp_states "$MP_NQN")"
        port_up $MP_A2
    fi
    csi mp.unpub.b node-unpublish "$MP_VOL" --target-path "$MP_PUB"
    csi mp.unstage.b node-unstage "$MP_VOL" --staging-path "$MP_STAGE" || fail mp.unstage.b "$(err mp.unstage.b)"
    [ -z "$(ctrls_of "$MP_NQN")" ] || fail mp.unstage.b "controllers left: $(mp_states "$MP_NQN")"
    csi mp.delete.b delete-volume "$MP_VOL" > /dev/null 2>&1
else
    fail mp.stage.one-down "$(err mp.create.b)"
fi

# ---- the kernel's multipath disabled: nvme_core is reloaded with multipath=N. nvmet uses
# nvme_core too (passthru), so the target modules go as well: that needs no controller and no
# exported subsystem on the host (the simulator recreates its ports on the next export). A
# two-path stage then connects one path and says why; afterwards everything is reloaded with Y.
mp_reload() { # Y|N
    [ -z "$(ls "$CFG/subsystems" 2>/dev/null)" ] || { echo "subsystems exported: $(ls "$CFG/subsystems" | tr '\n' ' ')"; return 1; }
    for p in "$CFG"/ports/*; do [ -d "$p" ] && { rmdir "$p" || return 1; }; done
    for h in "$CFG"/hosts/*; do [ -d "$h" ] && { rmdir "$h" || return 1; }; done
    for m in nvmet_tcp nvmet nvme_tcp nvme_fabrics nvme_core; do
        grep -q "^$m " /proc/modules && { rmmod "$m" || { echo "rmmod $m failed"; return 1; }; }
    done
    modprobe nvme_core multipath="$1" && modprobe nvme_fabrics && modprobe nvme_tcp \
        && modprobe nvmet && modprobe nvmet_tcp \
        && [ "$(cat /sys/module/nvme_core/parameters/multipath)" = "$1" ] \
        && [ -d "$CFG/subsystems" ] && [ -e /dev/nvme-fabrics ]
}
mp_paths n
mp_no_ctrls() { [ -z "$(ls /sys/class/nvme 2>/dev/null)" ]; }
mp_wait 15 mp_no_ctrls
if ! mp_no_ctrls; then
    fail mp.multipath-off "controllers left on the host, cannot reload nvme_core: $(ls /sys/class/nvme | tr '\n' ' ')"
elif ! why=$(mp_reload N); then
    fail mp.multipath-off "could not reload nvme_core with multipath=N ($why): modules $(cut -d' ' -f1 /proc/modules | grep nvme | tr '\n' ' ')"
    mp_reload Y > /dev/null
else
    if mp_create n && mp_stage n && mp_publish n; then
        sleep 2
        mp_stats n
        devs=$(mp_blockdevs "$MP_NQN" | tr '\n' ' ' | sed 's/ $//')
        if [ "$(ctrls_of "$MP_NQN" | wc -l)" = 1 ] && [ "$(echo "$devs" | wc -w)" = 1 ] \
           && [ "$(mount_source "$MP_STAGE")" = "/dev/$devs" ] \
           && [ "$(mp_abnormal n)" = true ] && mp_message n | grep -q "multipath=N" \
           && grep -q "multipath is off" /var/log/driver.log; then
            pass mp.multipath-off "one controller ($(mp_states "$MP_NQN")), one block device /dev/$devs; VolumeCondition: $(mp_message n | cut -c1-200)"
        else
            fail mp.multipath-off "controllers: $(mp_states "$MP_NQN") devices '$devs' mount $(mount_source "$MP_STAGE") condition '$(mp_message n)'"
        fi
        csi mp.unpub.n node-unpublish "$MP_VOL" --target-path "$MP_PUB"
        csi mp.unstage.n node-unstage "$MP_VOL" --staging-path "$MP_STAGE" || fail mp.unstage.n "$(err mp.unstage.n)"
    else
        fail mp.multipath-off "$(err mp.create.n) $(err mp.stage.n) $(err mp.pub.n)"
    fi
    csi mp.delete.n delete-volume "$MP_VOL" > /dev/null 2>&1
    if mp_wait 15 mp_no_ctrls && why=$(mp_reload Y); then
        log "multipath: nvme_core back to multipath=Y"
    else
        fail mp.multipath-restore "nvme_core not restored to multipath=Y ($why): controllers $(ls /sys/class/nvme 2>/dev/null | tr '\n' ' ')"
    fi
fi
