# What KubeVirt relies on from the node plugin, on the real kernel. Sourced by /scenario.sh
# (busybox ash): uses its helpers and counters. Everything made here is removed here.
#
# A hot-plug replaces the VM's attachment pod: while the old pod still has the volume, the new
# one on the same node publishes it too (NodePublish to a second target of one staged volume),
# then the old one goes (NodeUnpublish of the first target) and the VM's I/O must continue
# through the device untouched. And when the volume is finally unstaged while something on the
# node still holds the device (qemu not yet gone), NodeUnstage must refuse with a code kubelet
# retries, disconnecting nothing, and succeed once the holder is gone.
#
# CHECK names: kubevirt.*

KV_STAGE=$K/plugins/kubernetes.io/csi/rds.csi.srvlab.io/kv/globalmount
KV_OLD=$K/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-vm-kv/hp-volume-old
KV_NEW=$K/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-vm-kv/hp-volume-new
mkdir -p "$KV_STAGE" "$(dirname "$KV_OLD")"

# kv_same FILE : the first MiB read through FILE (direct I/O) equals the pattern written.
kv_same() {
    dd if="$1" of=/tmp/kv.readback bs=64k count=16 iflag=direct 2>/dev/null \
        && cmp -s /tmp/kv.pattern /tmp/kv.readback
}

if [ "${NODE:-yes}" != yes ]; then
    fail kubevirt.handoff "not run: NodeStageVolume failed earlier (see node.stage)"
elif csi kv.create create-volume --name pvc-vm-kv --size 1Gi --block; then
    KV_VOL=$(jqf kv.create .volume.volume_id); KV_NQN=$(jqf kv.create .volume.volume_context.nqn)
    KV_CTX=$(ctx_args kv.create)
    dd if=/dev/urandom of=/tmp/kv.pattern bs=64k count=16 2>/dev/null
    # shellcheck disable=SC2086
    if csi kv.stage node-stage "$KV_VOL" --staging-path "$KV_STAGE" --block $KV_CTX \
       && csi kv.pub.old node-publish "$KV_VOL" --staging-path "$KV_STAGE" --target-path "$KV_OLD" --block $KV_CTX \
       && dd if=/tmp/kv.pattern of="$KV_OLD" bs=64k conv=fsync 2>/dev/null; then
        KV_DEV=$(dev_of "$KV_NQN")
        KV_CTRLS=$(ctrls_of "$KV_NQN" | tr '\n' ' ')
        # The replacement attachment pod publishes the same volume on the same node.
        # shellcheck disable=SC2086
        if csi kv.pub.new node-publish "$KV_VOL" --staging-path "$KV_STAGE" --target-path "$KV_NEW" --block $KV_CTX \
           && kv_same "$KV_NEW" && kv_same "$KV_OLD"; then
            pass kubevirt.second-publish "second target of one staged block volume on one node; both read the data"
        else
            fail kubevirt.second-publish "$(err kv.pub.new)"
        fi
        # A writer on the new target keeps going while the old attachment pod is removed.
        ( exec 3<>"$KV_NEW"; i=0; while [ $i -lt 40 ]; do
              dd if=/tmp/kv.pattern of="$KV_NEW" bs=64k count=16 conv=notrunc,fsync 2>/dev/null || exit 1
              i=$((i+1)); sleep 0.05
          done ) &
        KV_WRITER=$!
        if csi kv.unpub.old node-unpublish "$KV_VOL" --target-path "$KV_OLD" \
           && wait "$KV_WRITER" && kv_same "$KV_NEW" && [ ! -e "$KV_OLD" ] \
           && [ "$(ctrls_of "$KV_NQN" | tr '\n' ' ')" = "$KV_CTRLS" ] && [ "$(dev_of "$KV_NQN")" = "$KV_DEV" ]; then
            pass kubevirt.handoff "old target unpublished under a running writer: writes kept succeeding, same device /dev/$KV_DEV and controllers $KV_CTRLS"
        else
            fail kubevirt.handoff "unpublish: $(err kv.unpub.old); writer exit $?; dev '$(dev_of "$KV_NQN")' (was $KV_DEV); controllers '$(ctrls_of "$KV_NQN" | tr '\n' ' ')' (were $KV_CTRLS)"
        fi
        # qemu still holds the device when kubelet unpublishes and unstages.
        ( exec 3<"/dev/$KV_DEV"; exec sleep 30 ) &
        KV_HOLDER=$!
        sleep 0.3
        csi kv.unpub.new node-unpublish "$KV_VOL" --target-path "$KV_NEW" || fail kubevirt.unpublish "$(err kv.unpub.new)"
        if csi kv.unstage.busy node-unstage "$KV_VOL" --staging-path "$KV_STAGE"; then
            fail kubevirt.unstage-in-use "NodeUnstage succeeded while pid $KV_HOLDER held /dev/$KV_DEV"
        elif grep -q "FAILED_PRECONDITION: " /tmp/csi/kv.unstage.busy.err && grep -q "in use" /tmp/csi/kv.unstage.busy.err \
             && live_ctrl "$KV_NQN" && kv_same "/dev/$KV_DEV"; then
            pass kubevirt.unstage-in-use "FAILED_PRECONDITION while a process holds the device; nothing disconnected, data readable: $(err kv.unstage.busy | cut -c1-160)"
        else
            fail kubevirt.unstage-in-use "$(err kv.unstage.busy); live controller: $(live_ctrl "$KV_NQN" && echo yes || echo no)"
        fi
        kill "$KV_HOLDER" 2>/dev/null; wait "$KV_HOLDER" 2>/dev/null
        if csi kv.unstage node-unstage "$KV_VOL" --staging-path "$KV_STAGE" && [ -z "$(ctrls_of "$KV_NQN")" ]; then
            pass kubevirt.unstage-retry "the retry after the holder exited unstaged and disconnected"
        else
            fail kubevirt.unstage-retry "$(err kv.unstage); controllers '$(ctrls_of "$KV_NQN" | tr '\n' ' ')'"
        fi
    else
        fail kubevirt.second-publish "stage: $(err kv.stage) publish: $(err kv.pub.old)"
        csi kv.unpub.old node-unpublish "$KV_VOL" --target-path "$KV_OLD"
        csi kv.unstage node-unstage "$KV_VOL" --staging-path "$KV_STAGE"
    fi
    csi kv.delete delete-volume "$KV_VOL" || fail controller.delete "$(err kv.delete)"
else
    fail kubevirt.second-publish "$(err kv.create)"
fi
