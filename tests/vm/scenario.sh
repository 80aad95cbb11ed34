#!/bin/sh
# The VM suite's checks (busybox ash, run by /init). Drives the driver only through real CSI gRPC
# (`rds-csi csi ...`, JSON replies) and checks the effects on the real kernel: the nvmet target
# tree, the initiator's sysfs, the mount table, file contents. Prints
#   CHECK <name> PASS|FAIL|SKIP <detail>
#   TIMING <name> <seconds> <detail>
# and finally "N passed, M failed, K skipped". Exit status 0 only without failures.
#
# Environment (from /init): ENDPOINT (driver socket).
CFG=/sys/kernel/config/nvmet
K=/run/kubelet          # stands in for /var/lib/kubelet
PORT=4420
OUTAGE=${OUTAGE:-10}    # seconds each target outage lasts
PASSED=0; FAILED=0; SKIPPED=0
mkdir -p "$K" /tmp/csi

up() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(up)" 'BEGIN{printf "%.1f", b-a}'; }
log() { echo "[$(up)] $*"; }
pass() { echo "CHECK $1 PASS ${2:-}"; PASSED=$((PASSED+1)); }
fail() { echo "CHECK $1 FAIL ${2:-}"; FAILED=$((FAILED+1)); }
skip() { echo "CHECK $1 SKIP ${2:-}"; SKIPPED=$((SKIPPED+1)); }
# check NAME DETAIL -- command... : PASS when the command succeeds.
check() {
    local name=$1 detail=$2; shift 3
    if "$@"; then pass "$name" "$detail"; else fail "$name" "$detail"; fi
}
timing() { echo "TIMING $1 $2 ${3:-}"; }

# csi NAME args... : one RPC; reply in /tmp/csi/NAME.json, error text in /tmp/csi/NAME.err.
csi() {
    local n=$1; shift
    rds-csi csi --endpoint "$ENDPOINT" --timeout 90s "$@" > "/tmp/csi/$n.json" 2> "/tmp/csi/$n.err"
}
err() { tr '\n' ' ' < "/tmp/csi/$1.err" | cut -c1-300; }
jqf() { jq -r "$2" "/tmp/csi/$1.json"; }
# csi_twice NAME args... : the RPC twice; both must succeed with the same reply (idempotency).
csi_twice() {
    local n=$1; shift
    csi "$n" "$@" || return 1
    csi "$n.again" "$@" || { echo "second call failed: $(err "$n.again")" > "/tmp/csi/$n.err"; return 1; }
    # Key order of map fields (volume_context) is not significant; compare canonical JSON.
    [ "$(jq -S -c . "/tmp/csi/$n.json")" = "$(jq -S -c . "/tmp/csi/$n.again.json")" ] \
        || { echo "second reply differs: $(tr -d ' \n' < "/tmp/csi/$n.again.json" | cut -c1-200)" > "/tmp/csi/$n.err"; return 1; }
}
# Context flags for node RPCs from a CreateVolume reply.
ctx_args() { jq -r '.volume.volume_context // {} | to_entries[] | "--context=\(.key)=\(.value)"' "/tmp/csi/$1.json"; }

# ---- kernel views
ctrls_of() { # nqn -> controller names
    for c in /sys/class/nvme/nvme*; do
        [ -e "$c/subsysnqn" ] && [ "$(cat "$c/subsysnqn")" = "$1" ] && echo "${c##*/}"
    done
}
state_of() { cat "/sys/class/nvme/$1/state" 2>/dev/null || echo gone; }
dev_of() { # nqn -> block device name (multipath head or per-controller namespace)
    for s in /sys/class/nvme-subsystem/nvme-subsys*; do
        [ -e "$s/subsysnqn" ] && [ "$(cat "$s/subsysnqn")" = "$1" ] || continue
        for b in "$s"/nvme*n*; do [ -e "$b/size" ] && { echo "${b##*/}"; return 0; }; done
    done
    for c in $(ctrls_of "$1"); do
        for b in /sys/class/nvme/"$c"/nvme*n*; do [ -e "$b/size" ] && { echo "${b##*/}"; return 0; }; done
    done
    return 1
}
wait_dev() { # nqn seconds
    i=0; while [ $i -lt $(($2 * 10)) ]; do dev_of "$1" && return 0; sleep 0.1; i=$((i+1)); done; return 1
}
bytes_of() { echo $(( $(cat "/sys/class/block/$1/size") * 512 )); }
mount_source() { # path -> device of the newest mount there
    awk -v p="$1" '$5 == p { for (i = 7; i <= NF; i++) if ($i == "-") { print $(i+2); break } }' /proc/self/mountinfo | tail -n1
}
mount_count() { awk -v p="$1" '$5 == p' /proc/self/mountinfo | wc -l; }
live_ctrl() { for c in $(ctrls_of "$1"); do [ "$(state_of "$c")" = live ] && return 0; done; return 1; }

# ---- target manipulation (what an RDS outage looks like to the initiator)
# The simulator exports every disk on two addresses (127.0.0.1 and 127.0.0.2, one nvmet port
# each, same TCP port); single-path volumes use 127.0.0.1. Helpers take the address, default
# 127.0.0.1.
port_dir() { # [addr] : the nvmet port directory of that address and our TCP port
    for p in "$CFG"/ports/*; do
        [ "$(cat "$p/addr_trsvcid" 2>/dev/null)" = "$PORT" ] \
            && [ "$(cat "$p/addr_traddr" 2>/dev/null)" = "${1:-127.0.0.1}" ] && { echo "$p"; return 0; }
    done
    return 1
}
port_down() { # [addr] : removes the port: the initiator's reconnects are refused
    local a=${1:-127.0.0.1} P id links
    P=$(port_dir "$a") || return 1
    id=${P##*/}; links=$(ls "$P/subsystems")
    for s in $links; do rm "$P/subsystems/$s"; done
    rmdir "$P" || return 1
    # Remembered per address so two ports can be down at once.
    echo "$id" > "/tmp/port.$a.id"; echo "$links" > "/tmp/port.$a.links"
}
port_up() { # [addr]
    local a=${1:-127.0.0.1} P
    P=$CFG/ports/$(cat "/tmp/port.$a.id"); mkdir "$P" || return 1
    echo tcp > "$P/addr_trtype"; echo ipv4 > "$P/addr_adrfam"
    echo "$a" > "$P/addr_traddr"; echo "$PORT" > "$P/addr_trsvcid"
    for s in $(cat "/tmp/port.$a.links"); do ln -s "$CFG/subsystems/$s" "$P/subsystems/$s"; done
}
subsys_down() { # nqn: the subsystem disappears while the ports stay
    SAVED_PATH=$(cat "$CFG/subsystems/$1/namespaces/1/device_path")
    SAVED_PORTS=""
    for p in "$CFG"/ports/*; do
        [ -L "$p/subsystems/$1" ] || continue
        rm "$p/subsystems/$1"; SAVED_PORTS="$SAVED_PORTS $p"
    done
    [ -n "$SAVED_PORTS" ] || return 1
    echo 0 > "$CFG/subsystems/$1/namespaces/1/enable"
    rmdir "$CFG/subsystems/$1/namespaces/1" "$CFG/subsystems/$1"
}
subsys_up() { # nqn
    S=$CFG/subsystems/$1; mkdir "$S"; echo 1 > "$S/attr_allow_any_host"
    mkdir "$S/namespaces/1"; echo "$SAVED_PATH" > "$S/namespaces/1/device_path"
    [ -e "$S/namespaces/1/buffered_io" ] && echo 1 > "$S/namespaces/1/buffered_io"
    echo 1 > "$S/namespaces/1/enable"
    for p in $SAVED_PORTS; do ln -s "$S" "$p/subsystems/$1"; done
}
# io_works DIR SECONDS : a small synced write and a read finish within the deadline.
io_works() {
    rm -f /tmp/io.rc
    ( dd if=/dev/urandom of="$1/probe.bin" bs=4k count=4 conv=fsync 2>/dev/null \
        && cat "$1/marker.txt" > /dev/null; echo $? > /tmp/io.rc ) &
    i=0; while [ ! -s /tmp/io.rc ] && [ $i -lt $(($2 * 10)) ]; do sleep 0.1; i=$((i+1)); done
    [ "$(cat /tmp/io.rc 2>/dev/null)" = 0 ]
}

# stage_phases < json-log : one TIMING line per driver log line of the first NodeStageVolume.
stage_phases() {
    jq -r -R 'fromjson? | select(.timestamp) | [.timestamp, .message // .fields.message // "", (.method // "")] | @tsv' \
    | awk -F '\t' '
        function secs(ts) { split(substr(ts, 12, 15), a, ":"); return a[1] * 3600 + a[2] * 60 + a[3] }
        done { next }
        { t = secs($1); if (start == "") start = t
          m = $2; gsub(/ /, "-", m)
          printf "TIMING stage.phase %.3f %s\n", t - start, m
          if ($2 == "rpc ok" && $3 == "NodeStageVolume") done = 1 }'
}

log "scenario start: $(rds-csi --version)"

# ======================================================================= identity
csi probe probe && pass identity.probe "$(tr -d ' \n' < /tmp/csi/probe.json)" \
    || fail identity.probe "$(err probe)"

# ======================================================================= controller
# A: the filesystem volume the node checks use.
if csi_twice createA create-volume --name pvc-vm-a --size 1Gi --fs-type ext4; then
    VOL_A=$(jqf createA .volume.volume_id); NQN_A=$(jqf createA '.volume.volume_context.nqn')
    pass controller.create.idempotent "$VOL_A answered twice identically"
else
    fail controller.create.idempotent "$(err createA)"
fi
log "volume A: $VOL_A nqn=$NQN_A"
S_A=$CFG/subsystems/$NQN_A
if [ -n "$NQN_A" ] && [ -d "$S_A" ] && [ "$(cat "$S_A/namespaces/1/enable")" = 1 ] \
   && [ -L "$(port_dir)/subsystems/$NQN_A" ] && [ -f "$(cat "$S_A/namespaces/1/device_path")" ]; then
    pass controller.create.exports "nvmet subsystem $NQN_A enabled, backed by $(cat "$S_A/namespaces/1/device_path"), linked to port $PORT"
else
    fail controller.create.exports "configfs: $(ls "$CFG/subsystems" | tr '\n' ' ')"
fi
nvme discover -t tcp -a 127.0.0.1 -s $PORT > /tmp/discover.txt 2>&1
check controller.discover "nvme discover lists $NQN_A" -- grep -q "subnqn: *$NQN_A" /tmp/discover.txt

# R: connected raw with nvme-cli, to see expansion reach the initiator through nvmet.
if csi createR create-volume --name pvc-vm-raw --size 1Gi --block; then
    VOL_R=$(jqf createR .volume.volume_id); NQN_R=$(jqf createR '.volume.volume_context.nqn')
    SIZE_R=$(jqf createR .volume.capacity_bytes)
    nvme connect -t tcp -a 127.0.0.1 -s $PORT -n "$NQN_R" > /tmp/connect.txt 2>&1
    if DEV_R=$(wait_dev "$NQN_R" 15) && [ "$(bytes_of "$DEV_R")" = "$SIZE_R" ]; then
        pass controller.connect "nvme connect $NQN_R -> /dev/$DEV_R, $(bytes_of "$DEV_R") bytes"
    else
        fail controller.connect "device '$DEV_R' $(cat /tmp/connect.txt)"
    fi
    if csi_twice expandR expand-volume "$VOL_R" --size 2Gi --block; then
        NEW_R=$(jqf expandR .capacity_bytes)
        t0=$(up); ok=1; i=0
        while [ "$(bytes_of "$DEV_R" 2>/dev/null)" != "$NEW_R" ]; do
            i=$((i+1)); [ $i -lt 150 ] || { ok=0; break; }; sleep 0.1
        done
        if [ $ok = 1 ]; then
            pass controller.expand.reaches-initiator "/dev/$DEV_R grew $SIZE_R -> $NEW_R bytes without reconnecting"
            timing expand.initiator-sees-size "$(since "$t0")" "after ControllerExpandVolume returned"
        else
            fail controller.expand.reaches-initiator "/dev/$DEV_R still $(bytes_of "$DEV_R") bytes"
        fi
    else
        fail controller.expand.reaches-initiator "$(err expandR)"
    fi
    nvme disconnect -n "$NQN_R" > /dev/null 2>&1
    if csi_twice deleteR delete-volume "$VOL_R"; then
        nvme discover -t tcp -a 127.0.0.1 -s $PORT > /tmp/discover2.txt 2>&1
        if [ ! -e "$CFG/subsystems/$NQN_R" ] && ! grep -q "subnqn: *$NQN_R" /tmp/discover2.txt; then
            pass controller.delete.unexports "subsystem gone from configfs and discovery; delete repeated OK"
        else
            fail controller.delete.unexports "still exported: $(ls "$CFG/subsystems" | tr '\n' ' ')"
        fi
    else
        fail controller.delete.unexports "$(err deleteR)"
    fi
else
    fail controller.connect "$(err createR)"
fi

# ======================================================================= node
STAGE_A=$K/plugins/kubernetes.io/csi/rds.csi.srvlab.io/a/globalmount
PUB_A=$K/pods/pod-a/volumes/kubernetes.io~csi/pvc-vm-a/mount
mkdir -p "$STAGE_A" "$(dirname "$PUB_A")"
CTX_A=$(ctx_args createA)
NODE=yes
t0=$(up); nl0=$(wc -l < /var/log/driver.log)
# shellcheck disable=SC2086
if csi stageA node-stage "$VOL_A" --staging-path "$STAGE_A" --fs-type ext4 $CTX_A; then
    timing stage.total "$(since "$t0")" "NodeStageVolume, fresh ext4 volume"
    # Phase split from the driver's own log lines (JSON), relative to the RPC's first line:
    # whatever the node logs between start and "staged" (connect, device, mkfs, mount).
    tail -n +"$((nl0 + 1))" /var/log/driver.log | stage_phases
    DEV_A=$(dev_of "$NQN_A")
    SRC=$(mount_source "$STAGE_A")
    if [ -n "$DEV_A" ] && [ "$SRC" = "/dev/$DEV_A" ] && blkid "/dev/$DEV_A" | grep -q 'TYPE="ext4"'; then
        pass node.stage "$STAGE_A <- /dev/$DEV_A (ext4), resolved from $NQN_A"
    else
        fail node.stage "mount source '$SRC', device of NQN '$DEV_A'"
    fi
    csi_twice stageA2 node-stage "$VOL_A" --staging-path "$STAGE_A" --fs-type ext4 $CTX_A \
        && [ "$(mount_count "$STAGE_A")" = 1 ] \
        && pass node.stage.idempotent "repeated twice, one mount" \
        || fail node.stage.idempotent "$(err stageA2) mounts=$(mount_count "$STAGE_A")"
else
    # The node plugin exists: UNIMPLEMENTED is a regression like any other error. The checks
    # that need a staged volume then fail as "not run" instead of cascading confusingly.
    NODE=no
    fail node.stage "$(err stageA)"
fi

if [ $NODE = yes ]; then
    if csi_twice pubA node-publish "$VOL_A" --staging-path "$STAGE_A" --target-path "$PUB_A" --fs-type ext4 $CTX_A \
       && [ "$(mount_count "$PUB_A")" = 1 ]; then
        MARK="vm-suite $(cat /proc/sys/kernel/random/uuid)"
        echo "$MARK" > "$PUB_A/marker.txt" && sync
        check node.publish "published twice (one mount), marker written" -- \
            [ "$(cat "$PUB_A/marker.txt")" = "$MARK" ]
    else
        fail node.publish "$(err pubA.again) $(err pubA) mounts=$(mount_count "$PUB_A")"
    fi

    # ---- target outage: the port disappears for OUTAGE seconds, then comes back.
    C_A=$(ctrls_of "$NQN_A" | head -n1)
    log "outage 1: port $PORT removed for ${OUTAGE}s (controller $C_A)"
    if port_down; then
        sleep "$OUTAGE"
        log "outage 1: during: $C_A=$(state_of "$C_A")"
        port_up; t0=$(up)
        io_ok=no; live=""
        rm -f /tmp/io.rc
        ( dd if=/dev/urandom of="$PUB_A/after-outage.bin" bs=4k count=4 conv=fsync 2>/dev/null; echo $? > /tmp/io.rc ) &
        i=0; while [ $i -lt 900 ]; do
            [ -z "$live" ] && live_ctrl "$NQN_A" && live=$(since "$t0")
            [ -s /tmp/io.rc ] && [ -n "$live" ] && break
            sleep 0.1; i=$((i+1))
        done
        [ "$(cat /tmp/io.rc 2>/dev/null)" = 0 ] && io_ok=yes
        io_t=$(since "$t0")
        timing outage.kernel-reconnect "${live:-never}" "controller live again after the port came back"
        timing outage.io-works "$io_t" "synced write at the publish path done after the port came back"
        if [ $io_ok = yes ] && [ "$(cat "$PUB_A/marker.txt")" = "$MARK" ] \
           && [ "$(mount_source "$STAGE_A")" = "/dev/$DEV_A" ]; then
            pass node.outage.port "same data readable and writable, same device, no re-stage"
        else
            fail node.outage.port "io=$io_ok marker='$(cat "$PUB_A/marker.txt" 2>&1)' source=$(mount_source "$STAGE_A")"
        fi
    else
        fail node.outage.port "could not take port $PORT down"
    fi

    # ---- subsystem removed and restored (kernel 6.12 deletes the controller despite ctrl_loss_tmo)
    log "outage 2: subsystem $NQN_A removed for ${OUTAGE}s"
    if subsys_down "$NQN_A"; then
        sleep "$OUTAGE"
        gone_during=$([ -z "$(ctrls_of "$NQN_A")" ] && echo "controller deleted by the kernel" || echo "controller kept: $(for c in $(ctrls_of "$NQN_A"); do state_of "$c"; done)")
        log "outage 2: during: $gone_during"
        subsys_up "$NQN_A"; t0=$(up); after_restore=""
        how=""
        # Give the kernel and the node's background monitor (10 s passes) a minute to recover.
        while [ "$(awk -v a="$t0" -v b="$(up)" 'BEGIN{print (b-a < 60)}')" = 1 ]; do
            if io_works "$PUB_A" 10 && [ "$(cat "$PUB_A/marker.txt" 2>/dev/null)" = "$MARK" ]; then how="by itself"; break; fi
            [ -n "$after_restore" ] || after_restore=$([ -z "$(ctrls_of "$NQN_A")" ] && echo "controller deleted after restore" || echo "controller present after restore")
            sleep 1
        done
        if [ -z "$how" ]; then
            # What kubelet does when the pod is restarted: stage and publish again.
            csi stageA3 node-stage "$VOL_A" --staging-path "$STAGE_A" --fs-type ext4 $CTX_A
            csi pubA3 node-publish "$VOL_A" --staging-path "$STAGE_A" --target-path "$PUB_A" --fs-type ext4 $CTX_A
            io_works "$PUB_A" 20 && [ "$(cat "$PUB_A/marker.txt" 2>/dev/null)" = "$MARK" ] && how="after NodeStage+NodePublish again"
        fi
        timing outage2.recovered "$(since "$t0")" "${how:-not recovered} ($gone_during; $after_restore)"
        if [ -n "$how" ]; then
            pass node.outage.subsystem "recovered $how; $gone_during; $after_restore"
        else
            fail node.outage.subsystem "marker='$(cat "$PUB_A/marker.txt" 2>&1)' stage: $(err stageA3) publish: $(err pubA3); $gone_during"
        fi
        DEV_A=$(dev_of "$NQN_A")
    else
        fail node.outage.subsystem "could not remove the subsystem"
    fi

    # ---- renumbering: the controller vanishes under the mounts, another volume takes its name.
    if csi createB create-volume --name pvc-vm-b --size 1Gi --block; then
        NQN_B=$(jqf createB '.volume.volume_context.nqn'); VOL_B=$(jqf createB .volume.volume_id)
        old="$(ctrls_of "$NQN_A" | tr '\n' ' '| sed 's/ $//')/$DEV_A"
        nvme disconnect -n "$NQN_A" > /dev/null 2>&1
        nvme connect -t tcp -a 127.0.0.1 -s $PORT -n "$NQN_B" > /dev/null 2>&1
        DEV_B=$(wait_dev "$NQN_B" 15)
        log "renumber: A was $old; B now /dev/$DEV_B; stale mounts left at $STAGE_A"
        csi stageA4 node-stage "$VOL_A" --staging-path "$STAGE_A" --fs-type ext4 $CTX_A
        csi pubA4 node-publish "$VOL_A" --staging-path "$STAGE_A" --target-path "$PUB_A" --fs-type ext4 $CTX_A
        DEV_A=$(dev_of "$NQN_A")
        if [ -n "$DEV_A" ] && [ "$(mount_source "$STAGE_A")" = "/dev/$DEV_A" ] \
           && [ "$(cat "$PUB_A/marker.txt" 2>/dev/null)" = "$MARK" ] \
           && ! blkid "/dev/$DEV_B" > /dev/null 2>&1; then
            pass node.renumber "A $old -> $(ctrls_of "$NQN_A" | tr '\n' ' ' | sed 's/ $//')/$DEV_A by NQN, marker intact, B (/dev/$DEV_B) untouched"
        else
            fail node.renumber "A dev '$DEV_A' src '$(mount_source "$STAGE_A")' marker '$(cat "$PUB_A/marker.txt" 2>&1)' B blkid '$(blkid "/dev/$DEV_B" 2>&1)' stage: $(err stageA4) publish: $(err pubA4)"
        fi
        nvme disconnect -n "$NQN_B" > /dev/null 2>&1
        csi deleteB delete-volume "$VOL_B" || fail controller.delete "$(err deleteB)"
    else
        fail node.renumber "$(err createB)"
    fi

    # ---- block volume: raw device published as a file, data through dd.
    STAGE_C=$K/plugins/kubernetes.io/csi/rds.csi.srvlab.io/c/globalmount
    PUB_C=$K/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-vm-c/pod-c
    mkdir -p "$STAGE_C" "$(dirname "$PUB_C")"
    if csi createC create-volume --name pvc-vm-c --size 1Gi --block; then
        VOL_C=$(jqf createC .volume.volume_id); CTX_C=$(ctx_args createC)
        dd if=/dev/urandom of=/tmp/pattern bs=64k count=16 2>/dev/null
        if csi_twice stageC node-stage "$VOL_C" --staging-path "$STAGE_C" --block $CTX_C \
           && csi_twice pubC node-publish "$VOL_C" --staging-path "$STAGE_C" --target-path "$PUB_C" --block $CTX_C \
           && dd if=/tmp/pattern of="$PUB_C" bs=64k conv=fsync 2>/dev/null \
           && dd if="$PUB_C" of=/tmp/readback bs=64k count=16 iflag=direct 2>/dev/null \
           && cmp -s /tmp/pattern /tmp/readback; then
            pass node.block "1 MiB written through $PUB_C and read back identically (direct I/O)"
        else
            fail node.block "stage: $(err stageC) publish: $(err pubC)"
        fi
        csi_twice unpubC node-unpublish "$VOL_C" --target-path "$PUB_C" || fail node.block.unpublish "$(err unpubC)"
        csi_twice unstageC node-unstage "$VOL_C" --staging-path "$STAGE_C" || fail node.block.unstage "$(err unstageC)"
        csi deleteC delete-volume "$VOL_C" || fail controller.delete "$(err deleteC)"
    else
        fail node.block "$(err createC)"
    fi

    # ---- expansion: controller, then node, then the filesystem shows it.
    before=$(df -k "$PUB_A" | awk 'NR==2 {print $2}')
    if csi_twice expandA expand-volume "$VOL_A" --size 2Gi --fs-type ext4 \
       && csi_twice nexpandA node-expand "$VOL_A" --volume-path "$PUB_A" --staging-path "$STAGE_A" --size 2Gi --fs-type ext4; then
        after=$(df -k "$PUB_A" | awk 'NR==2 {print $2}')
        if [ "$after" -gt $((before * 3 / 2)) ]; then
            pass node.expand "df: ${before}k -> ${after}k; both RPCs repeated OK"
        else
            fail node.expand "df: ${before}k -> ${after}k"
        fi
    else
        fail node.expand "controller: $(err expandA) node: $(err nexpandA)"
    fi

    # ---- teardown: every RPC twice, the initiator let go, the export gone.
    if csi_twice unpubA node-unpublish "$VOL_A" --target-path "$PUB_A" \
       && csi_twice unstageA node-unstage "$VOL_A" --staging-path "$STAGE_A"; then
        if [ "$(mount_count "$STAGE_A")" = 0 ] && [ "$(mount_count "$PUB_A")" = 0 ] && [ -z "$(ctrls_of "$NQN_A")" ]; then
            pass node.unstage "unpublish and unstage repeated OK; no mounts, controller disconnected"
        else
            fail node.unstage "mounts stage=$(mount_count "$STAGE_A") pub=$(mount_count "$PUB_A") controllers=$(ctrls_of "$NQN_A")"
        fi
    else
        fail node.unstage "$(err unpubA) $(err unstageA)"
    fi
else
    for c in node.publish node.outage.port node.outage.subsystem node.renumber node.block node.expand node.unstage; do
        fail "$c" "not run: NodeStageVolume failed earlier (see node.stage)"
    done
fi

if csi_twice deleteA delete-volume "$VOL_A" && [ ! -e "$S_A" ]; then
    pass controller.delete "A deleted twice, subsystem gone"
else
    fail controller.delete "$(err deleteA) configfs: $(ls "$CFG/subsystems" | tr '\n' ' ')"
fi

# ======================================================================= feature scenarios
# Each file in /scenarios.d is sourced in name order (same shell: it uses the helpers above and
# adds to the counters). Each creates and deletes its own volumes and must leave no mounts or
# connections behind.
for f in /scenarios.d/*.sh; do
    [ -f "$f" ] || continue
    log "scenario file: ${f##*/}"
    # shellcheck disable=SC1090
    . "$f"
done

echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" = 0 ]
