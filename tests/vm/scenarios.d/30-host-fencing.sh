# Host fencing on the real kernel target. Sourced by /scenario.sh (busybox ash): uses its helpers
# and counters. A volume created with hostFencing=true is published to this VM's node id (which
# carries the driver's host NQN); the simulated RDS then restricts the nvmet subsystem to that
# host, so the node plugin's connect is accepted while an `nvme connect` with a second, made-up
# host identity is refused by the kernel. Publishing to a second node id swaps the roles; with
# hostFencing off both hosts connect. Everything made here is removed here.
#
# CHECK names: hostfence.*

HF_U2=$(cat /proc/sys/kernel/random/uuid)
HF_H2="nqn.2014-08.org.nvmexpress:uuid:$HF_U2"
HF_H1=$(cat /etc/nvme/hostnqn)
HF_U1=$(cat /etc/nvme/hostid)
HF_STAGE=$K/plugins/kubernetes.io/csi/rds.csi.srvlab.io/hf/globalmount

# hf_acl NQN : "any" when the subsystem allows any host, else its allowed host NQNs.
hf_acl() {
    if [ "$(cat "$CFG/subsystems/$1/attr_allow_any_host")" = 1 ]; then
        echo any
    else
        ls "$CFG/subsystems/$1/allowed_hosts" | tr '\n' ' ' | sed 's/ $//'
    fi
}
# hf_connect NQN HOSTNQN HOSTID [ADDRESS] : raw nvme-cli connect as that host (to 127.0.0.1, or
# ADDRESS: the simulator exports every disk on its second address too, the multipath path);
# succeeds only when a live controller for NQN appears. Leaves the connection up.
hf_connect() {
    nvme connect -t tcp -a "${4:-127.0.0.1}" -s $PORT -n "$1" --hostnqn "$2" --hostid "$3" \
        > /tmp/hf.connect.txt 2>&1 || return 1
    i=0; until live_ctrl "$1"; do i=$((i+1)); [ $i -lt 100 ] || return 1; sleep 0.1; done
}
# hf_refused NQN HOSTNQN HOSTID [ADDRESS] : the connect fails and no controller for NQN exists.
hf_refused() {
    ! hf_connect "$1" "$2" "$3" "${4:-127.0.0.1}" && [ -z "$(ctrls_of "$1")" ]
}
hf_disconnect() { nvme disconnect -n "$1" > /dev/null 2>&1; }
# The target's own word for a refused host, when the kernel log shows it.
hf_dmesg() { dmesg 2>/dev/null | grep -i "not allowed" | grep -F "$1" | tail -n1 | cut -c1-200; }

HF_NODE=""
if [ "${NODE:-yes}" != yes ]; then
    fail hostfence.node-id "not run: NodeStageVolume failed earlier (see node.stage)"
elif ! csi hf.info node-info; then
    fail hostfence.node-id "$(err hf.info)"
else
    HF_NODE=$(jqf hf.info .node_id)
    check hostfence.node-id "NodeGetInfo: $HF_NODE" -- [ "$HF_NODE" = "vm-node/$HF_H1" ]
fi

if [ -n "$HF_NODE" ] && csi hf.create create-volume --name pvc-vm-hostfence --size 1Gi --fs-type ext4 \
        --param hostFencing=true; then
    HF_VOL=$(jqf hf.create .volume.volume_id); HF_NQN=$(jqf hf.create .volume.volume_context.nqn)
    HF_CTX=$(ctx_args hf.create)
    check hostfence.open-at-create "a new volume allows any host ($(hf_acl "$HF_NQN"))" -- \
        [ "$(hf_acl "$HF_NQN")" = any ]

    # Published to this node: only its host NQN may connect.
    if csi_twice hf.pub1 publish "$HF_VOL" --node "$HF_NODE" --fs-type ext4 $HF_CTX \
       && [ "$(hf_acl "$HF_NQN")" = "$HF_H1" ]; then
        pass hostfence.publish "allowed_hosts = this node's NQN, attr_allow_any_host 0 (publish repeated OK)"
    else
        fail hostfence.publish "$(err hf.pub1) acl=$(hf_acl "$HF_NQN")"
    fi
    if hf_refused "$HF_NQN" "$HF_H2" "$HF_U2"; then
        pass hostfence.refused "second host $HF_H2 refused by the target: $(tr '\n' ' ' < /tmp/hf.connect.txt | cut -c1-120) $(hf_dmesg "$HF_H2")"
    else
        fail hostfence.refused "second host connected: $(tr '\n' ' ' < /tmp/hf.connect.txt | cut -c1-160)"
    fi
    hf_disconnect "$HF_NQN"
    # The fence is the subsystem's, not a port's: the second path refuses the same host.
    if hf_refused "$HF_NQN" "$HF_H2" "$HF_U2" 127.0.0.2; then
        pass hostfence.refused.second-path "second host refused on 127.0.0.2 too (the multipath path)"
    else
        fail hostfence.refused.second-path "second host connected through 127.0.0.2: $(tr '\n' ' ' < /tmp/hf.connect.txt | cut -c1-160)"
    fi
    hf_disconnect "$HF_NQN"
    mkdir -p "$HF_STAGE"
    if csi hf.stage node-stage "$HF_VOL" --staging-path "$HF_STAGE" --fs-type ext4 $HF_CTX \
       && [ -n "$(mount_source "$HF_STAGE")" ]; then
        pass hostfence.stage "NodeStage connected as the published node and mounted $(mount_source "$HF_STAGE")"
    else
        fail hostfence.stage "$(err hf.stage)"
    fi
    csi_twice hf.unstage node-unstage "$HF_VOL" --staging-path "$HF_STAGE" \
        || fail hostfence.unstage "$(err hf.unstage)"

    # Unpublished: open again. Published to a second node id (the made-up host): roles swap.
    if csi_twice hf.unpub1 unpublish "$HF_VOL" --node "$HF_NODE" \
       && [ "$(hf_acl "$HF_NQN")" = any ]; then
        pass hostfence.unpublish "any host allowed again (unpublish repeated OK)"
    else
        fail hostfence.unpublish "$(err hf.unpub1) acl=$(hf_acl "$HF_NQN")"
    fi
    if csi hf.pub2 publish "$HF_VOL" --node "vm-node2/$HF_H2" --fs-type ext4 $HF_CTX \
       && [ "$(hf_acl "$HF_NQN")" = "$HF_H2" ]; then
        pass hostfence.publish.other "allowed_hosts = $HF_H2"
    else
        fail hostfence.publish.other "$(err hf.pub2) acl=$(hf_acl "$HF_NQN")"
    fi
    if hf_connect "$HF_NQN" "$HF_H2" "$HF_U2"; then
        pass hostfence.swap.allowed "the second host connects now"
    else
        fail hostfence.swap.allowed "$(tr '\n' ' ' < /tmp/hf.connect.txt | cut -c1-160)"
    fi
    hf_disconnect "$HF_NQN"
    if hf_refused "$HF_NQN" "$HF_H1" "$HF_U1"; then
        pass hostfence.swap.refused "this node (the first host) is refused now $(hf_dmesg "$HF_H1")"
    else
        fail hostfence.swap.refused "first host connected: $(tr '\n' ' ' < /tmp/hf.connect.txt | cut -c1-160)"
    fi
    hf_disconnect "$HF_NQN"
    if hf_refused "$HF_NQN" "$HF_H1" "$HF_U1" 127.0.0.2; then
        pass hostfence.swap.refused.second-path "this node is refused on 127.0.0.2 too"
    else
        fail hostfence.swap.refused.second-path "first host connected through 127.0.0.2: $(tr '\n' ' ' < /tmp/hf.connect.txt | cut -c1-160)"
    fi
    hf_disconnect "$HF_NQN"
    csi_twice hf.unpub2 unpublish "$HF_VOL" --node "vm-node2/$HF_H2" \
        || fail hostfence.unpublish.other "$(err hf.unpub2)"
    csi_twice hf.delete delete-volume "$HF_VOL" || fail hostfence.delete "$(err hf.delete)"
elif [ -n "$HF_NODE" ]; then
    fail hostfence.publish "$(err hf.create)"
fi

# hostFencing off: publishing leaves the export open; both hosts connect.
if [ -n "$HF_NODE" ] && csi hf.off create-volume --name pvc-vm-hostfence-off --size 1Gi --block; then
    HF_OVOL=$(jqf hf.off .volume.volume_id); HF_ONQN=$(jqf hf.off .volume.volume_context.nqn)
    HF_OCTX=$(ctx_args hf.off)
    if csi hf.off.pub publish "$HF_OVOL" --node "$HF_NODE" --block $HF_OCTX \
       && [ "$(hf_acl "$HF_ONQN")" = any ] \
       && hf_connect "$HF_ONQN" "$HF_H2" "$HF_U2" && hf_disconnect "$HF_ONQN" \
       && hf_connect "$HF_ONQN" "$HF_H1" "$HF_U1" && hf_disconnect "$HF_ONQN"; then
        pass hostfence.off "published without hostFencing: any host allowed, both hosts connected"
    else
        fail hostfence.off "$(err hf.off.pub) acl=$(hf_acl "$HF_ONQN") $(tr '\n' ' ' < /tmp/hf.connect.txt | cut -c1-120)"
    fi
    hf_disconnect "$HF_ONQN"
    csi hf.off.unpub unpublish "$HF_OVOL" --node "$HF_NODE" || fail hostfence.off.unpublish "$(err hf.off.unpub)"
    csi_twice hf.off.delete delete-volume "$HF_OVOL" || fail hostfence.delete "$(err hf.off.delete)"
elif [ -n "$HF_NODE" ]; then
    fail hostfence.off "$(err hf.off)"
fi
