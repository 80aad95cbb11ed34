# Snapshots, restores and clones on the real kernel. Sourced by /scenario.sh (busybox ash): uses
# its helpers and counters. A filesystem volume is written through nvme-tcp, snapshotted
# (CreateSnapshot: `/disk add copy-from` on the simulated RDS, whose copy really copies the
# backing file), overwritten, then restored from the snapshot and cloned from the volume; each
# copy is staged and published through the node plugin and must hold the data of its moment.
# Snapshots must never appear in the nvmet target. Everything made here is removed here.
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

SN_VOL=""; SN_SNAP=""; SN_RESTORE=""; SN_CLONE=""
if [ "${NODE:-yes}" != yes ]; then
    skip snapshot.restore "node plugin not available in this build"
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
    if [ -n "$SN_SNAP" ]; then
        csi_twice sn.snapdel delete-snapshot "$SN_SNAP" || { ok=no; log "snapshot delete: $(err sn.snapdel)"; }
    fi
    sn_down src "$SN_VOL" || { ok=no; log "source cleanup: $(err sn.unpub.src) $(err sn.unstage.src) $(err sn.delete.src)"; }
    pat=snap-
    for v in "$SN_VOL" "$SN_RESTORE" "$SN_CLONE"; do [ -z "$v" ] || pat="$pat|${v#*:}"; done
    left=$(ls "$SN_DIR" 2>/dev/null | grep -E "$pat" | tr '\n' ' ')
    subs=$(ls "$CFG/subsystems" | grep -E 'snap-' | tr '\n' ' ')
    if [ $ok = yes ] && [ -z "$left" ] && [ -z "$subs" ] \
       && [ "$(mount_count "$(sn_pub src)")" = 0 ] && [ "$(mount_count "$(sn_stage src)")" = 0 ]; then
        pass snapshot.cleanup "copies, snapshot and source removed; no file, export or mount left"
    else
        fail snapshot.cleanup "files: '$left' subsystems: '$subs'"
    fi
fi
