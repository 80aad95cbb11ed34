# Node-side csi-sanity cases (kubernetes-csi/csi-test pkg/sanity/node.go) on the real kernel.
# Sourced by /scenario.sh (busybox ash): uses its helpers and counters. Every request is sent
# through `rds-csi csi` to the running `rds-csi all` in the shape csi-sanity sends it (empty
# strings for missing ids/paths, --no-capability for a missing capability), so what is checked
# is the DRIVER's answer: the gRPC code in the error text and, where the driver names it, the
# field. Each volume made here is deleted here; nothing is left mounted or connected.
#
# CHECK names: node.sanity.<rpc>.<case> for the refusals, node.sanity.should-work for the
# lifecycle chain, node.sanity.<rpc>.* for the success cases inside it.

NC_STAGE=$K/plugins/kubernetes.io/csi/rds.csi.srvlab.io/nc/globalmount
NC_PUB=$K/pods/pod-nc/volumes/kubernetes.io~csi/pvc-vm-nc/mount
# What csi-sanity's default id generator makes: a valid id for no volume of this driver.
NC_FAKE=fake-volume-id-5b4f1b0a-3c1e-4a8e-9d59-0f1b8e6f7a21
mkdir -p "$NC_STAGE" "$(dirname "$NC_PUB")"

# nc_refused CHECK CODE FIELD args... : the RPC fails with CODE and (unless FIELD is empty) the
# message names FIELD, so the refusal is for the reason the case is about.
nc_refused() {
    local name=$1 code=$2 field=$3; shift 3
    if csi "$name" "$@"; then
        fail "$name" "succeeded ($(tr -d ' \n' < "/tmp/csi/$name.json" | cut -c1-120)); expected $code"
    elif grep -q "$code: " "/tmp/csi/$name.err" && { [ -z "$field" ] || grep -q "$field" "/tmp/csi/$name.err"; }; then
        pass "$name" "$(err "$name")"
    else
        fail "$name" "expected $code${field:+ naming $field}: $(err "$name")"
    fi
}
# The kernel and the mount table show nothing of volume NQN at PATH.
nc_untouched() { [ -z "$(ctrls_of "$1")" ] && [ "$(mount_count "$2")" = 0 ]; }

# ---- NodeGetCapabilities / NodeGetInfo through the binary
if csi nc.caps node-capabilities; then
    caps=$(jq -c . /tmp/csi/nc.caps.json | tr -d '_' | tr 'A-Z' 'a-z')
    missing=""
    for c in stageunstagevolume getvolumestats volumecondition expandvolume singlenodemultiwriter; do
        echo "$caps" | grep -q "$c" || missing="$missing $c"
    done
    if [ -z "$missing" ]; then pass node.sanity.get-capabilities "STAGE_UNSTAGE, GET_VOLUME_STATS, VOLUME_CONDITION, EXPAND, SINGLE_NODE_MULTI_WRITER"
    else fail node.sanity.get-capabilities "missing:$missing in $caps"; fi
else
    fail node.sanity.get-capabilities "$(err nc.caps)"
fi
NC_NODE=""
if csi nc.info node-info; then
    NC_NODE=$(jqf nc.info .node_id)
    NC_MAX=$(jqf nc.info '.max_volumes_per_node // 0')
    if [ -n "$NC_NODE" ] && [ "$NC_NODE" != null ] && [ "$NC_MAX" -ge 0 ]; then
        pass node.sanity.get-info "node_id=$NC_NODE max_volumes_per_node=$NC_MAX"
    else
        fail node.sanity.get-info "$(tr -d ' \n' < /tmp/csi/nc.info.json)"
    fi
else
    fail node.sanity.get-info "$(err nc.info)"
fi

# ---- missing fields: INVALID_ARGUMENT (csi-sanity's exact request, then where it differs from
# what the driver checks first, a variant that isolates the field)
nc_refused node.sanity.publish.no-volume-id INVALID_ARGUMENT volume_id \
    node-publish "" --target-path "" --no-capability
nc_refused node.sanity.publish.no-target-path INVALID_ARGUMENT "" \
    node-publish "$NC_FAKE" --target-path "" --no-capability
nc_refused node.sanity.publish.no-target-path.staged INVALID_ARGUMENT target_path \
    node-publish "$NC_FAKE" --staging-path "$NC_STAGE" --target-path "" --fs-type ext4
nc_refused node.sanity.publish.no-capability INVALID_ARGUMENT "" \
    node-publish "$NC_FAKE" --target-path "$NC_PUB" --no-capability
nc_refused node.sanity.publish.no-capability.staged INVALID_ARGUMENT capability \
    node-publish "$NC_FAKE" --staging-path "$NC_STAGE" --target-path "$NC_PUB" --no-capability
nc_refused node.sanity.unpublish.no-volume-id INVALID_ARGUMENT volume_id \
    node-unpublish "" --target-path ""
nc_refused node.sanity.unpublish.no-target-path INVALID_ARGUMENT target_path \
    node-unpublish "$NC_FAKE" --target-path ""
nc_refused node.sanity.stage.no-volume-id INVALID_ARGUMENT volume_id \
    node-stage "" --staging-path "$NC_STAGE" --fs-type ext4 --publish-context device=/dev/mock
nc_refused node.sanity.stage.no-staging-path INVALID_ARGUMENT staging_target_path \
    node-stage "$NC_FAKE" --staging-path "" --fs-type ext4 --publish-context device=/dev/mock
nc_refused node.sanity.unstage.no-volume-id INVALID_ARGUMENT volume_id \
    node-unstage "" --staging-path "$NC_STAGE"
nc_refused node.sanity.unstage.no-staging-path INVALID_ARGUMENT staging_target_path \
    node-unstage "$NC_FAKE" --staging-path ""
nc_refused node.sanity.stats.no-volume-id INVALID_ARGUMENT volume_id \
    node-stats "" --volume-path some/path
nc_refused node.sanity.stats.no-volume-path INVALID_ARGUMENT volume_path \
    node-stats "$NC_FAKE" --volume-path ""
nc_refused node.sanity.expand.no-volume-id INVALID_ARGUMENT volume_id \
    node-expand "" --volume-path "$K/pods" --fs-type ext4
# ---- unknown volume: NOT_FOUND
nc_refused node.sanity.stats.volume-not-found NOT_FOUND "" \
    node-stats "$NC_FAKE" --volume-path some/path
nc_refused node.sanity.expand.volume-not-found NOT_FOUND "" \
    node-expand "$NC_FAKE" --volume-path some/path --no-capability

# ---- cases on a created volume, and the lifecycle chain ("Node Service: should work")
if csi nc.create create-volume --name pvc-vm-nc --size 1Gi --fs-type ext4; then
    NC_VOL=$(jqf nc.create .volume.volume_id); NC_NQN=$(jqf nc.create .volume.volume_context.nqn)
    NC_CTX=$(ctx_args nc.create)
    # Sanity creates a volume for these and sends no volume_context.
    nc_refused node.sanity.stage.no-capability INVALID_ARGUMENT capability \
        node-stage "$NC_VOL" --staging-path "$NC_STAGE" --no-capability --publish-context device=/dev/mock
    nc_refused node.sanity.expand.no-volume-path INVALID_ARGUMENT volume_path \
        node-expand "$NC_VOL" --volume-path "" --fs-type ext4
    if nc_untouched "$NC_NQN" "$NC_STAGE"; then
        pass node.sanity.refusals-touch-nothing "after every refusal: no controller for $NC_NQN, nothing mounted at the staging path"
    else
        fail node.sanity.refusals-touch-nothing "controllers: $(ctrls_of "$NC_NQN" | tr '\n' ' ') mounts at staging: $(mount_count "$NC_STAGE")"
    fi

    ok=yes
    step="ControllerPublishVolume to $NC_NODE"
    # shellcheck disable=SC2086
    csi_twice nc.cpub publish "$NC_VOL" --node "$NC_NODE" --fs-type ext4 $NC_CTX || ok=no
    NC_PCTX=$(jq -r '.publish_context // {} | to_entries[] | "--publish-context=\(.key)=\(.value)"' /tmp/csi/nc.cpub.json 2>/dev/null)
    if [ $ok = yes ]; then
        step=NodeStageVolume
        # shellcheck disable=SC2086
        csi_twice nc.stage node-stage "$NC_VOL" --staging-path "$NC_STAGE" --fs-type ext4 $NC_PCTX $NC_CTX \
            && [ "$(mount_count "$NC_STAGE")" = 1 ] || ok=no
    fi
    if [ $ok = yes ]; then
        step=NodePublishVolume
        # shellcheck disable=SC2086
        csi_twice nc.pub node-publish "$NC_VOL" --staging-path "$NC_STAGE" --target-path "$NC_PUB" --fs-type ext4 $NC_PCTX $NC_CTX \
            && [ "$(mount_count "$NC_PUB")" = 1 ] && echo sanity > "$NC_PUB/file" && sync || ok=no
    fi
    if [ $ok = yes ]; then
        step=NodeGetVolumeStats
        csi_twice nc.stats node-stats "$NC_VOL" --volume-path "$NC_PUB" || ok=no
        NC_TOTAL=$(jqf nc.stats '[.usage[]? | select((.unit | tostring | ascii_downcase | test("byte")) or .unit == 1) | .total][0] // 0' 2>/dev/null)
        NC_ABN=$(jqf nc.stats '.volume_condition.abnormal // false' 2>/dev/null)
        if [ $ok = yes ] && ! { [ "${NC_TOTAL:-0}" -gt 0 ] && [ "$NC_ABN" = false ]; }; then
            ok=no; echo "usage total '$NC_TOTAL' abnormal '$NC_ABN'" > /tmp/csi/nc.stats.err
        fi
    fi
    if [ $ok = yes ]; then
        detail="publish, stage, publish, stats each twice: one staging mount, one bind, $NC_TOTAL bytes, healthy"
        # Between publish and unpublish: the cases that need a published volume.
        nc_refused node.sanity.stats.not-on-path NOT_FOUND "" node-stats "$NC_VOL" --volume-path some/path
        before=$(df -k "$NC_PUB" | awk 'NR==2 {print $2}')
        if csi nc.cexp expand-volume "$NC_VOL" --size 2Gi --fs-type ext4 \
           && csi nc.nexp node-expand "$NC_VOL" --volume-path "$NC_PUB" --size 2Gi --no-capability; then
            after=$(df -k "$NC_PUB" | awk 'NR==2 {print $2}')
            if [ "$after" -gt $((before * 3 / 2)) ] && [ "$(jqf nc.nexp .capacity_bytes)" -ge $((2 << 30)) ]; then
                pass node.sanity.expand.after-publish "sanity's request (no capability): df ${before}k -> ${after}k, capacity_bytes $(jqf nc.nexp .capacity_bytes)"
            else
                fail node.sanity.expand.after-publish "df ${before}k -> ${after}k reply $(tr -d ' \n' < /tmp/csi/nc.nexp.json)"
            fi
        else
            fail node.sanity.expand.after-publish "controller: $(err nc.cexp) node: $(err nc.nexp)"
        fi
        step=NodeUnpublishVolume
        if csi_twice nc.unpub node-unpublish "$NC_VOL" --target-path "$NC_PUB"; then
            if [ ! -e "$NC_PUB" ] && [ -d "$(dirname "$NC_PUB")" ]; then
                pass node.sanity.unpublish.removes-target-path "$NC_PUB gone after unpublish (twice), parent kept"
            else
                fail node.sanity.unpublish.removes-target-path "$(ls -ld "$NC_PUB" 2>&1) mounts=$(mount_count "$NC_PUB")"
            fi
            step=NodeUnstageVolume
            if csi_twice nc.unstage node-unstage "$NC_VOL" --staging-path "$NC_STAGE" \
               && nc_untouched "$NC_NQN" "$NC_STAGE"; then
                step=ControllerUnpublishVolume
                csi_twice nc.cunpub unpublish "$NC_VOL" --node "$NC_NODE" || ok=no
            else
                ok=no
            fi
        else
            ok=no
        fi
    fi
    if [ $ok = yes ]; then
        pass node.sanity.should-work "$detail; unpublish, unstage (disconnected), controller unpublish each twice"
    else
        fail node.sanity.should-work "at $step: $(for f in /tmp/csi/nc.*.err; do [ -s "$f" ] && echo "${f##*/}: $(tr '\n' ' ' < "$f" | cut -c1-160)"; done | tr '\n' ' ' | cut -c1-600) stage mounts=$(mount_count "$NC_STAGE") pub mounts=$(mount_count "$NC_PUB")"
        csi nc.cleanup1 node-unpublish "$NC_VOL" --target-path "$NC_PUB"
        csi nc.cleanup2 node-unstage "$NC_VOL" --staging-path "$NC_STAGE"
        csi nc.cleanup3 unpublish "$NC_VOL" --node "$NC_NODE"
    fi
    csi_twice nc.delete delete-volume "$NC_VOL" || fail node.sanity.should-work "delete: $(err nc.delete)"
else
    fail node.sanity.should-work "create: $(err nc.create)"
fi
