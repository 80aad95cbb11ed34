# Snapshots, restores and clones on the real kernel. Sourced by /scenario.sh (busybox ash): uses
# its helpers and counters. A filesystem volume is written through nvme-tcp, snapshotted
# (CreateSnapshot: `/disk add copy-from` on the simulated RDS, whose copy really copies the
# backing file), overwritten, then restored from the snapshot and cloned from the volume; each
# copy is staged and published through the node plugin and must hold the data of its moment.
# Snapshots must never appear in the nvmet target. A restore into a larger volume is grown by
# NodeStageVolume: df shows the new size and the data is intact. Everything made here is removed
# here.
#
# CHECK names: snapshot.*

SN_MARK1="before-snapshot $(cat /proc/sys/kernel/random/uuid)"
SN_MARK2="after-snapshot $(cat /proc/sys/kernel/random/uuid)"
SN_DIR=/srv/rds/storage-pool/metal-csi

# sn_stage_pub TAG CREATE_JSON_NAME : stage and publish the volume of a create-volume reply at
# paths named after TAG; prints nothing, fails when either step fails.
sn_stage_pub() {
    local tag=$1 reply=$2 vol stage pub
    vol=$(jqf "$reply" .volume.volume_id)
    stage=$K/plugins/kubernetes.io/csi/rds.csi.srvlab.io/sn-$tag/globalmount
    pub=$K/pods/pod-sn-$tag/volumes/kubernetes.io~csi/pvc-vm-sn-$tag/mount
    mkdir -p "$stage" "$(dirname "$pub")"
    # shellcheck disable=SC2046
    csi "sn.stage.$tag" node-stage "$vol" --staging-path "$stage" --fs-type ext4 $(ctx_args "$reply") \
        && csi "sn.pub.$tag" node-publish "$vol" --staging-path "$stage" --target-path "$pub" \
            --fs-type ext4 $(ctx_args "$reply")
}
sn_pub() { echo "$K/pods/pod-sn-$1/volumes/kubernetes.io~csi/pvc-vm-sn-$1/mount"; }
sn_stage() { echo "$K/plugins/kubernetes.io/csi/rds.csi.srvlab.io/sn-$1/globalmount"; }
# sn_down TAG VOL : unpublish, unstage, delete (each repeated: idempotent).
sn_down() {
    csi_twice "sn.unpub.$1" node-unpublish "$2" --target-path "$(sn_pub "$1")" \
        && csi_twice "sn.unstage.$1" node-unstage "$2" --staging-path "$(sn_stage "$1")" \
        && csi_twice "sn.delete.$1" delete-volume "$2"
}
# No nvmet subsystem of a snapshot slot, and discovery lists none.
sn_no_snapshot_exports() {
    nvme discover -t tcp -a 127.0.0.1 -s $PORT > /tmp/sn.discover.txt 2>&1
    ! ls "$CFG/subsystems" | grep -q 'snap-' && ! grep -q 'subnqn: .*snap-' /tmp/sn.discover.txt
}

SN_VOL=""; SN_SNAP=""; SN_RESTORE=""; SN_CLONE=""; SN_BIG=""
if [ "${NODE:-yes}" != yes ]; then
    fail snapshot.restore "not run: NodeStageVolume failed earlier (see node.stage)"
elif ! csi sn.src create-volume --name pvc-vm-sn-src --size 1Gi --fs-type ext4; then
    fail snapshot.source "$(err sn.src)"
elif ! sn_stage_pub src sn.src; then
    fail snapshot.source "$(err sn.stage.src) $(err sn.pub.src)"
else
    SN_VOL=$(jqf sn.src .volume.volume_id)
    echo "$SN_MARK1" > "$(sn_pub src)/marker.txt" && sync
    pass snapshot.source "$SN_VOL staged, published, marker written"

    t0=$(up)
    if csi_twice sn.snap create-snapshot --name vm-snap-1 --source-volume "$SN_VOL"; then
        timing snapshot.create "$(since "$t0")" "CreateSnapshot twice (copy-from of a 1 GiB volume)"
        SN_SNAP=$(jqf sn.snap .snapshot.snapshot_id)
        if [ "$(jqf sn.snap .snapshot.ready_to_use)" = true ] \
           && [ "$(jqf sn.snap .snapshot.source_volume_id)" = "$SN_VOL" ] \
           && [ "$(jqf sn.snap .snapshot.size_bytes)" = "$(jqf sn.src .volume.capacity_bytes)" ]; then
            pass snapshot.create "$SN_SNAP ready, source $SN_VOL, answered twice identically"
        else
            fail snapshot.create "$(tr -d ' \n' < /tmp/csi/sn.snap.json | cut -c1-200)"
        fi
    else
        fail snapshot.create "$(err sn.snap)"
    fi
    check snapshot.not-exported "no nvmet subsystem or discovery entry for a snap- slot" -- \
        sn_no_snapshot_exports

    # The source moves on after the snapshot.
    echo "$SN_MARK2" > "$(sn_pub src)/marker.txt" && sync

    if [ -n "$SN_SNAP" ] && csi_twice sn.list list-snapshots --source-volume "$SN_VOL"; then
        check snapshot.list.by-source "ListSnapshots by source names $SN_SNAP" -- \
            [ "$(jqf sn.list '[.entries[].snapshot.snapshot_id] | join(",")')" = "$SN_SNAP" ]
    else
        fail snapshot.list.by-source "$(err sn.list)"
    fi

    # ---- restore from the snapshot: the first marker, not the second.
    if [ -z "$SN_SNAP" ]; then
        fail snapshot.restore "no snapshot to restore"
    elif ! csi_twice sn.restore create-volume --name pvc-vm-sn-restore --size 1Gi --fs-type ext4 \
            --snapshot "$SN_SNAP"; then
        fail snapshot.restore "$(err sn.restore)"
    else
        SN_RESTORE=$(jqf sn.restore .volume.volume_id)
        if ! jq -c .volume.content_source /tmp/csi/sn.restore.json | grep -q "$SN_SNAP"; then
            fail snapshot.restore.content-source "$(jq -c .volume.content_source /tmp/csi/sn.restore.json)"
        else
            pass snapshot.restore.content-source "CreateVolume echoes the snapshot source"
        fi
        if ! sn_stage_pub restore sn.restore; then
            fail snapshot.restore "$(err sn.stage.restore) $(err sn.pub.restore)"
        elif [ "$(cat "$(sn_pub restore)/marker.txt" 2>/dev/null)" = "$SN_MARK1" ]; then
            pass snapshot.restore "$SN_RESTORE over nvme-tcp reads the marker written before the snapshot"
        else
            fail snapshot.restore "marker: '$(cat "$(sn_pub restore)/marker.txt" 2>&1)'"
        fi
        # Independent of the source: writing the restored copy leaves the source alone.
        echo "restored copy edited" > "$(sn_pub restore)/marker.txt" && sync
        check snapshot.restore.independent "source still reads the second marker" -- \
            [ "$(cat "$(sn_pub src)/marker.txt")" = "$SN_MARK2" ]
    fi

    # ---- restore into a larger volume: the 1 GiB snapshot's ext4 grown to the 2 GiB device at
    # stage, online, before anything is published; the data of the snapshot is intact.
    if [ -z "$SN_SNAP" ]; then
        fail snapshot.restore.larger "no snapshot to restore"
    elif ! csi_twice sn.big create-volume --name pvc-vm-sn-restore-big --size 2Gi --fs-type ext4 \
            --snapshot "$SN_SNAP"; then
        fail snapshot.restore.larger "$(err sn.big)"
    else
        SN_BIG=$(jqf sn.big .volume.volume_id)
        t0=$(up); nl0=$(wc -l < /var/log/driver.log)
        if [ "$(jqf sn.big .volume.capacity_bytes)" != $((2 << 30)) ]; then
            fail snapshot.restore.larger "capacity_bytes $(jqf sn.big .volume.capacity_bytes), 2Gi asked"
        elif ! sn_stage_pub big sn.big; then
            fail snapshot.restore.larger "$(err sn.stage.big) $(err sn.pub.big)"
        else
            timing snapshot.restore.larger.stage "$(since "$t0")" "stage (connect, mount, grow 1 -> 2 GiB) and publish"
            dev=$(dev_of "$(jqf sn.big .volume.volume_context.nqn)")
            dev_bytes=$(bytes_of "$dev")
            size_k=$(df -k "$(sn_stage big)" | awk 'NR==2 {print $2}')
            avail_k=$(df -k "$(sn_stage big)" | awk 'NR==2 {print $4}')
            src_k=$(df -k "$(sn_pub src)" | awk 'NR==2 {print $2}')
            # ext4 keeps ~3 % for inode tables and journal: more than 90 % of 2 GiB is the grown
            # filesystem; more free space than the whole 1 GiB source proves the new room is usable.
            if [ "$dev_bytes" = $((2 << 30)) ] && [ "$size_k" -gt $((2097152 * 9 / 10)) ] \
               && [ "$size_k" -le 2097152 ] && [ "$avail_k" -gt "$src_k" ]; then
                pass snapshot.restore.larger.grown "df ${size_k}k on a $dev_bytes-byte $dev (source ${src_k}k), ${avail_k}k free"
            else
                fail snapshot.restore.larger.grown "df ${size_k}k (avail ${avail_k}k) on ${dev:-?} of ${dev_bytes:-?} bytes; source ${src_k}k"
            fi
            # The plugin says what it did: one grow, from the snapshot's 1 GiB to the 2 GiB device.
            grew=$(tail -n +"$((nl0 + 1))" /var/log/driver.log | grep 'grew the filesystem' \
                | grep -F "${SN_BIG#*:}" | grep 1073741824 | grep -c 2147483648)
            check snapshot.restore.larger.logged "driver log: one 'grew the filesystem' 1073741824 -> 2147483648 for $SN_BIG" -- \
                [ "$grew" = 1 ]
            check snapshot.restore.larger.data "the grown copy reads the marker written before the snapshot" -- \
                [ "$(cat "$(sn_pub big)/marker.txt" 2>/dev/null)" = "$SN_MARK1" ]
            # Writable after the grow (kept small: the simulated RDS keeps its files in guest RAM).
            if dd if=/dev/urandom of=/tmp/sn.fill bs=1M count=16 2>/dev/null \
               && cp /tmp/sn.fill "$(sn_pub big)/fill" && sync \
               && cmp -s /tmp/sn.fill "$(sn_pub big)/fill" \
               && [ "$(cat "$(sn_pub big)/marker.txt")" = "$SN_MARK1" ]; then
                pass snapshot.restore.larger.writable "16 MiB written and read back after the grow; marker intact"
            else
                fail snapshot.restore.larger.writable "write or read-back failed"
            fi
            rm -f "$(sn_pub big)/fill" /tmp/sn.fill
            # A retried stage of the grown volume finds it full: nothing to grow, nothing stacked.
            nl1=$(wc -l < /var/log/driver.log)
            # shellcheck disable=SC2046
            if csi sn.stage.big.again node-stage "$SN_BIG" --staging-path "$(sn_stage big)" --fs-type ext4 \
                    $(ctx_args sn.big) && [ "$(mount_count "$(sn_stage big)")" = 1 ] \
               && [ "$(df -k "$(sn_stage big)" | awk 'NR==2 {print $2}')" = "$size_k" ] \
               && ! tail -n +"$((nl1 + 1))" /var/log/driver.log | grep -q 'grew the filesystem'; then
                pass snapshot.restore.larger.restage "NodeStage repeated: one mount, size unchanged, nothing grown"
            else
                fail snapshot.restore.larger.restage "$(err sn.stage.big.again) mounts $(mount_count "$(sn_stage big)")"
            fi
        fi
    fi

    # ---- clone of the volume: the second marker.
    if ! csi_twice sn.clone create-volume --name pvc-vm-sn-clone --size 1Gi --fs-type ext4 \
            --source-volume "$SN_VOL"; then
        fail snapshot.clone "$(err sn.clone)"
    else
        SN_CLONE=$(jqf sn.clone .volume.volume_id)
        if ! sn_stage_pub clone sn.clone; then
            fail snapshot.clone "$(err sn.stage.clone) $(err sn.pub.clone)"
        elif [ "$(cat "$(sn_pub clone)/marker.txt" 2>/dev/null)" = "$SN_MARK2" ]; then
            pass snapshot.clone "$SN_CLONE over nvme-tcp reads the source's current marker"
        else
            fail snapshot.clone "marker: '$(cat "$(sn_pub clone)/marker.txt" 2>&1)'"
        fi
    fi
    check snapshot.not-exported.after-copies "restores and clones exported, the snapshot still not" -- \
        sn_no_snapshot_exports

    # ---- clean up: every copy, the snapshot (twice: idempotent), then the source.
    ok=yes
    [ -z "$SN_RESTORE" ] || sn_down restore "$SN_RESTORE" || { ok=no; log "restore cleanup: $(err sn.unpub.restore) $(err sn.unstage.restore) $(err sn.delete.restore)"; }
    [ -z "$SN_CLONE" ] || sn_down clone "$SN_CLONE" || { ok=no; log "clone cleanup: $(err sn.unpub.clone) $(err sn.unstage.clone) $(err sn.delete.clone)"; }
    [ -z "$SN_BIG" ] || sn_down big "$SN_BIG" || { ok=no; log "larger restore cleanup: $(err sn.unpub.big) $(err sn.unstage.big) $(err sn.delete.big)"; }
    if [ -n "$SN_SNAP" ]; then
        csi_twice sn.snapdel delete-snapshot "$SN_SNAP" || { ok=no; log "snapshot delete: $(err sn.snapdel)"; }
    fi
    sn_down src "$SN_VOL" || { ok=no; log "source cleanup: $(err sn.unpub.src) $(err sn.unstage.src) $(err sn.delete.src)"; }
    pat=snap-
    for v in "$SN_VOL" "$SN_RESTORE" "$SN_CLONE" "$SN_BIG"; do [ -z "$v" ] || pat="$pat|${v#*:}"; done
    left=$(ls "$SN_DIR" 2>/dev/null | grep -E "$pat" | tr '\n' ' ')
    subs=$(ls "$CFG/subsystems" | grep -E 'snap-' | tr '\n' ' ')
    if [ $ok = yes ] && [ -z "$left" ] && [ -z "$subs" ] \
       && [ "$(mount_count "$(sn_pub src)")" = 0 ] && [ "$(mount_count "$(sn_stage src)")" = 0 ]; then
        pass snapshot.cleanup "copies, snapshot and source removed; no file, export or mount left"
    else
        fail snapshot.cleanup "files: '$left' subsystems: '$subs'"
    fi
fi
