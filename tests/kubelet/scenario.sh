#!/bin/sh
# The kubelet suite's checks (busybox ash, run as /scenario.sh by the VM suite's /init, which has
# already started `rds-csi sim --nvmet` and a driver). A real kubelet (Kubernetes 1.20 with the
# harness patch in scripts/kubelet/patches) drives a real `rds-csi node` here, registered to the
# host's kube-apiserver at 10.0.2.2 through qemu's user network. Pods run on Kubernetes' CRI
# test fake (scripts/kubelet/fakecri), which also serves plugin registration.
#
# Stand-ins, all on the controller side (the node path is entirely kubelet's):
#   - external-provisioner and the PV controller: CreateVolume on `rds-csi controller`, then a
#     PV with the reply's volume_context, pre-bound to the PVC, and the PVC's status set Bound.
#   - attach-detach controller and external-attacher: ControllerPublishVolume, then the
#     VolumeAttachment kubelet looks for (its own naming) marked attached with the reply's
#     publish_context, and the Node's status.volumesAttached.
# Prints CHECK <name> PASS|FAIL <detail> and "N passed, M failed, 0 skipped".
. /etc/kube/env      # API, TOKEN, NODE
DRIVER=rds.csi.srvlab.io
KD=/var/lib/kubelet
PLUGIN_DIR=$KD/plugins/$DRIVER
NODE_SOCK=$PLUGIN_DIR/csi.sock
CTRL=unix:///run/csi/csi.sock
WAIT=${KUBELET_WAIT:-120}      # seconds any one kubelet reaction may take (TCG is slow)
PASSED=0; FAILED=0
mkdir -p /tmp/k

up() { cut -d' ' -f1 /proc/uptime; }
log() { echo "[$(up)] $*"; }
pass() { echo "CHECK $1 PASS ${2:-}"; PASSED=$((PASSED+1)); }
fail() { echo "CHECK $1 FAIL ${2:-}"; FAILED=$((FAILED+1)); }
timing() { echo "TIMING $1 $2 ${3:-}"; }
since() { awk -v a="$1" -v b="$(up)" 'BEGIN{printf "%.1f", b-a}'; }

# api METHOD PATH [JSON] [CONTENT-TYPE]: one request to the host's API server; body on stdout.
api() {
    if [ -n "${3:-}" ]; then
        curl -sk --max-time 20 -X "$1" -H "Authorization: Bearer $TOKEN" \
            -H "Content-Type: ${4:-application/json}" --data-binary "$3" "$API$2"
    else
        curl -sk --max-time 20 -X "$1" -H "Authorization: Bearer $TOKEN" "$API$2"
    fi
}
# until_true SECONDS command...: poll every 0.5 s.
until_true() {
    local n=$(($1 * 2)); shift
    while [ $n -gt 0 ]; do "$@" && return 0; sleep 0.5; n=$((n-1)); done
    return 1
}
csi() { # NAME args...: RPC on the controller; reply in /tmp/k/NAME.json
    local n=$1; shift
    rds-csi csi --endpoint "$CTRL" --timeout 60s "$@" > "/tmp/k/$n.json" 2> "/tmp/k/$n.err"
}
ctrls_of() {
    for c in /sys/class/nvme/nvme*; do
        [ -e "$c/subsysnqn" ] && [ "$(cat "$c/subsysnqn")" = "$1" ] && echo "${c##*/}"
    done
}
mount_source() {
    awk -v p="$1" '$5 == p { for (i = 7; i <= NF; i++) if ($i == "-") { print $(i+2); break } }' /proc/self/mountinfo | tail -n1
}
mounted() { [ -n "$(mount_source "$1")" ]; }
not_mounted() { ! mounted "$1"; }
tail_logs() {
    for f in kubelet node fakecri; do
        echo "---- $f log tail"; tail -n "${1:-30}" /var/log/$f.log | cut -c1-400
    done
}

# ---------------------------------------------------------------- node setup
IF=$(ls /sys/class/net | grep -v '^lo$' | head -n1)
ip link set "$IF" up && ip addr add 10.0.2.15/24 dev "$IF" && ip route add default via 10.0.2.2
# cgroup v1 hierarchies, one per controller, as kubelet 1.20's cgroupfs driver expects.
mkdir -p /sys/fs/cgroup && mount -t tmpfs -o size=1m cgroup /sys/fs/cgroup
for c in $(awk 'NR > 1 && $4 == 1 {print $1}' /proc/cgroups); do
    mkdir -p "/sys/fs/cgroup/$c" && mount -t cgroup -o "$c" "$c" "/sys/fs/cgroup/$c"
done
mkdir -p "$KD" /var/log/pods /var/log/containers /etc/kubernetes /run/kubelet-wd
# kubelet's root dir on a real filesystem: its stats summary fails without one cadvisor knows
# (the initramfs root is not one).
dd if=/dev/zero of=/srv/kubelet.img bs=1M count=0 seek=512 2>/dev/null \
    && mkfs.ext4 -q -F /srv/kubelet.img && mount -o loop /srv/kubelet.img "$KD" \
    || fail node.kubelet-fs "cannot put $KD on a loop-mounted ext4"
if api GET /version > /tmp/k/version.json && jq -e .gitVersion /tmp/k/version.json > /dev/null; then
    pass node.api-reachable "host API server $(jq -r .gitVersion /tmp/k/version.json) at $API"
else
    fail node.api-reachable "no answer from $API: $(head -c 200 /tmp/k/version.json)"
    echo "$PASSED passed, $FAILED failed, 0 skipped"; exit 1
fi

# The controller side: init started `rds-csi all --no-kubernetes`; replace it with a controller
# alone, so the only node service on this machine is the one kubelet drives.
kill "$DRIVER_PID"; i=0; while kill -0 "$DRIVER_PID" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
rm -f /run/csi/csi.sock
RDS_CSI_LOG=info rds-csi controller --no-kubernetes --endpoint "$CTRL" --metrics-address 127.0.0.1:9811 \
    --rds-address 127.0.0.1 --rds-port 2222 --rds-user admin \
    --rds-key-file /etc/rds/id_ed25519 --rds-host-key /etc/rds/host_key.pub \
    --nvme-address 127.0.0.1 --nvme-port 4420 > /var/log/controller.log 2>&1 &
until_true 60 [ -S /run/csi/csi.sock ] || fail node.controller-start "$(tail -n 5 /var/log/controller.log)"
# `rds-csi node` with the node's ServiceAccount identity, as the DaemonSet runs it.
cat > /usr/bin/start-node-plugin <<EOF
#!/bin/sh
mkdir -p $PLUGIN_DIR
rm -f $NODE_SOCK
RDS_CSI_LOG=info,driver=debug rds-csi node --endpoint unix://$NODE_SOCK --node-id $NODE \\
    --kubeconfig /etc/kube/kubeconfig-node --metrics-address 127.0.0.1:9810 \\
    --state-dir /var/lib/rds-csi/node >> /var/log/node.log 2>&1 &
echo \$! > /run/node.pid
# The registrar comes up with the plugin, as node-driver-registrar does in the plugin's pod.
fakecri -registration-socket $KD/plugins_registry/$DRIVER-reg.sock -driver-name $DRIVER \\
    -csi-endpoint $NODE_SOCK >> /var/log/registrar.log 2>&1 &
echo \$! > /run/registrar.pid
i=0; until [ -S $NODE_SOCK ]; do i=\$((i+1)); [ \$i -lt 600 ] || exit 1; sleep 0.1; done
EOF
cat > /usr/bin/stop-node-plugin <<'EOF'
#!/bin/sh
for p in node registrar; do
    pid=$(cat /run/$p.pid 2>/dev/null) || continue
    kill "$pid" 2>/dev/null
    i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
done
EOF
# kubelet from a working directory of its own holding only a sentinel file: an empty container
# log path makes kubelet delete everything there (scripts/kubelet/fakecri/main.go).
cat > /usr/bin/start-kubelet <<EOF
#!/bin/sh
cd /run/kubelet-wd
# util-linux losetup (block volumes) is in /usr/bin, busybox's in /usr/sbin.
export PATH=/usr/bin:/usr/sbin:/bin:/sbin
kubelet --kubeconfig=/etc/kube/kubeconfig-kubelet --hostname-override=$NODE --node-ip=10.0.2.15 \\
    --container-runtime=remote --container-runtime-endpoint=unix:///run/fakecri.sock \\
    --image-service-endpoint=unix:///run/fakecri.sock --runtime-request-timeout=60s \\
    --root-dir=$KD --cert-dir=$KD/pki --cgroup-driver=cgroupfs --cgroups-per-qos=false \\
    --enforce-node-allocatable= --fail-swap-on=false --make-iptables-util-chains=false \\
    --eviction-hard= --image-gc-high-threshold=100 --image-gc-low-threshold=99 \\
    --read-only-port=10255 --resolv-conf= --volume-stats-agg-period=5s \\
    --node-status-update-frequency=5s --sync-frequency=5s --v=2 >> /var/log/kubelet.log 2>&1 &
echo \$! > /run/kubelet.pid
EOF
cat > /usr/bin/stop-kubelet <<'EOF'
#!/bin/sh
pid=$(cat /run/kubelet.pid) || exit 0
kill "$pid"; i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
EOF
chmod +x /usr/bin/start-node-plugin /usr/bin/stop-node-plugin /usr/bin/start-kubelet /usr/bin/stop-kubelet
: > /var/log/node.log; : > /var/log/kubelet.log; : > /var/log/registrar.log
fakecri -runtime-socket /run/fakecri.sock > /var/log/fakecri.log 2>&1 &
echo keep > /run/kubelet-wd/sentinel
start-node-plugin || fail node.plugin-start "socket never appeared: $(tail -n 5 /var/log/node.log)"
T=$(up)
start-kubelet

# ---------------------------------------------------------------- registration
csinode_id() {
    api GET "/apis/storage.k8s.io/v1/csinodes/$NODE" > /tmp/k/csinode.json 2>/dev/null
    jq -r --arg d "$DRIVER" '.spec.drivers // [] | .[] | select(.name == $d) | .nodeID' /tmp/k/csinode.json 2>/dev/null | grep .
}
node_ready() {
    api GET "/api/v1/nodes/$NODE" | jq -e '.status.conditions // [] | any(.type == "Ready" and .status == "True")' > /dev/null
}
if until_true "$WAIT" node_ready; then
    pass kubelet.node-ready "Node $NODE Ready after $(since "$T") s"
else
    fail kubelet.node-ready "Node $NODE not Ready after ${WAIT}s"; tail_logs 40
fi
if until_true "$WAIT" csinode_id > /dev/null; then
    NODE_ID=$(csinode_id)
    timing kubelet.registration "$(since "$T")" "kubelet start to CSINode entry"
    case "$NODE_ID" in
        "$NODE/"*) pass kubelet.registration "CSINode $NODE lists $DRIVER with node id $NODE_ID" ;;
        *) fail kubelet.registration "CSINode lists $DRIVER with node id '$NODE_ID', expected $NODE/<host NQN>" ;;
    esac
else
    NODE_ID=""
    fail kubelet.registration "no $DRIVER in CSINode $NODE: $(head -c 300 /tmp/k/csinode.json)"; tail_logs 40
fi

# ---------------------------------------------------------------- the stand-ins
# pvc NAME MODE(Filesystem|Block) SIZE: a PVC bound to a fresh volume, attached to this node.
# Run in $(...): its output is the error, if any; the replies stay in /tmp/k/{create,pub}-NAME.json.
pvc() {
    local name=$1 mode=$2 size=$3 flags uid pv va sum ctx pubctx
    if [ "$mode" = Block ]; then flags="--block"; else flags="--fs-type ext4"; fi
    csi "create-$name" create-volume --name "pv-$name" --size "$size" $flags || {
        echo "CreateVolume: $(head -c 300 "/tmp/k/create-$name.err")"; return 1; }
    VOL=$(jq -r .volume.volume_id "/tmp/k/create-$name.json")
    NQN=$(jq -r '.volume.volume_context.nqn' "/tmp/k/create-$name.json")
    ctx=$(jq -c '.volume.volume_context // {}' "/tmp/k/create-$name.json")
    api POST /api/v1/namespaces/default/persistentvolumeclaims "$(jq -nc --arg n "$name" --arg m "$mode" --arg s "$size" \
        '{apiVersion:"v1",kind:"PersistentVolumeClaim",metadata:{name:$n},
          spec:{accessModes:["ReadWriteOnce"],volumeMode:$m,storageClassName:"",volumeName:("pv-"+$n),
                resources:{requests:{storage:$s}}}}')" > "/tmp/k/pvc-$name.json"
    uid=$(jq -r .metadata.uid "/tmp/k/pvc-$name.json")
    [ -n "$uid" ] && [ "$uid" != null ] || { echo "PVC create: $(head -c 300 "/tmp/k/pvc-$name.json")"; return 1; }
    pv=$(jq -nc --arg n "$name" --arg m "$mode" --arg s "$size" --arg v "$VOL" --arg d "$DRIVER" \
        --arg u "$uid" --argjson c "$ctx" \
        '{apiVersion:"v1",kind:"PersistentVolume",metadata:{name:("pv-"+$n)},
          spec:{accessModes:["ReadWriteOnce"],volumeMode:$m,capacity:{storage:$s},storageClassName:"",
                persistentVolumeReclaimPolicy:"Retain",
                claimRef:{namespace:"default",name:$n,uid:$u},
                csi:({driver:$d,volumeHandle:$v,volumeAttributes:$c} + (if $m == "Filesystem" then {fsType:"ext4"} else {} end))}}')
    api POST /api/v1/persistentvolumes "$pv" | jq -e .metadata.uid > /dev/null || { echo "PV create failed"; return 1; }
    api PATCH "/api/v1/persistentvolumes/pv-$name/status" '{"status":{"phase":"Bound"}}' \
        application/merge-patch+json > /dev/null
    api PATCH "/api/v1/namespaces/default/persistentvolumeclaims/$name/status" \
        "$(jq -nc --arg s "$size" '{status:{phase:"Bound",accessModes:["ReadWriteOnce"],capacity:{storage:$s}}}')" \
        application/merge-patch+json | jq -e '.status.phase == "Bound"' > /dev/null || { echo "PVC not Bound"; return 1; }
    # Attach: what external-attacher does for the VolumeAttachment the A/D controller creates.
    csi "pub-$name" publish "$VOL" --node "$NODE_ID" $(jq -r '.volume.volume_context // {} | to_entries[] | "--context=\(.key)=\(.value)"' "/tmp/k/create-$name.json") || {
        echo "ControllerPublish: $(head -c 300 "/tmp/k/pub-$name.err")"; return 1; }
    pubctx=$(jq -c '.publish_context // {}' "/tmp/k/pub-$name.json")
    # kubelet's name for it: csi-<sha256(volume handle + driver + node name)>.
    sum=$(printf '%s%s%s' "$VOL" "$DRIVER" "$NODE" | sha256sum | cut -d' ' -f1)
    va="csi-$sum"
    api POST /apis/storage.k8s.io/v1/volumeattachments "$(jq -nc --arg n "$va" --arg d "$DRIVER" --arg node "$NODE" --arg pv "pv-$name" \
        '{apiVersion:"storage.k8s.io/v1",kind:"VolumeAttachment",metadata:{name:$n},
          spec:{attacher:$d,nodeName:$node,source:{persistentVolumeName:$pv}}}')" | jq -e .metadata.uid > /dev/null \
        || { echo "VolumeAttachment create failed"; return 1; }
    api PATCH "/apis/storage.k8s.io/v1/volumeattachments/$va/status" \
        "$(jq -nc --argjson m "$pubctx" '{status:{attached:true,attachmentMetadata:$m}}')" \
        application/merge-patch+json | jq -e '.status.attached' > /dev/null || { echo "VolumeAttachment status patch failed"; return 1; }
    set_attached
}
# The Node's status.volumesAttached: every VolumeAttachment of this node that is attached.
set_attached() {
    local list pvn h
    # Entries are named kubernetes.io/csi/<driver>^<volume handle>; the handle is on the PV.
    list=$(api GET /apis/storage.k8s.io/v1/volumeattachments | jq -r --arg node "$NODE" \
        '.items[] | select(.spec.nodeName == $node and .status.attached == true) | .spec.source.persistentVolumeName' \
        | while read -r pvn; do
            h=$(api GET "/api/v1/persistentvolumes/$pvn" | jq -r .spec.csi.volumeHandle)
            jq -nc --arg n "kubernetes.io/csi/$DRIVER^$h" '{name:$n,devicePath:""}'
        done | jq -sc .)
    api PATCH "/api/v1/nodes/$NODE/status" "$(jq -nc --argjson l "$list" '{status:{volumesAttached:$l}}')" \
        application/merge-patch+json > /dev/null
}
# pod NAME CLAIM MODE: a pod on this node using CLAIM (mounted at /data or as /dev/xvda).
pod() {
    local spec
    if [ "$3" = Block ]; then
        spec='{"volumeDevices":[{"name":"v","devicePath":"/dev/xvda"}]}'
    else
        spec='{"volumeMounts":[{"name":"v","mountPath":"/data"}]}'
    fi
    api POST /api/v1/namespaces/default/pods "$(jq -nc --arg n "$1" --arg c "$2" --arg node "$NODE" --argjson s "$spec" \
        '{apiVersion:"v1",kind:"Pod",metadata:{name:$n},
          spec:({nodeName:$node,terminationGracePeriodSeconds:1,
                containers:[{name:"c",image:"busybox",command:["sleep","3600"]} + $s],
                volumes:[{name:"v",persistentVolumeClaim:{claimName:$c}}]})}')" > "/tmp/k/pod-$1.json"
    jq -r .metadata.uid "/tmp/k/pod-$1.json"
}
pod_running() { api GET "/api/v1/namespaces/default/pods/$1" | jq -e '(.status | objects | .phase) == "Running"' > /dev/null 2>&1; }
pod_gone() { [ "$(api GET "/api/v1/namespaces/default/pods/$1" | jq -r .code)" = 404 ]; }
delete_pod() { api DELETE "/api/v1/namespaces/default/pods/$1" > /dev/null; }
pod_events() { api GET "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=$1" | jq -r '.items[] | "\(.reason): \(.message)"' | tail -n 5 | cut -c1-300; }
no_ctrl() { [ -z "$(ctrls_of "$1")" ]; }

[ -n "$NODE_ID" ] || { tail_logs 60; echo "$PASSED passed, $FAILED failed, 0 skipped"; exit 1; }

# ---------------------------------------------------------------- filesystem PVC
GLOBAL_FS=$KD/plugins/kubernetes.io/csi/pv/pv-fs1/globalmount
if out=$(pvc fs1 Filesystem 1Gi); then
    # pvc ran in a subshell: read what it created.
    VOL_FS=$(jq -r .volume.volume_id /tmp/k/create-fs1.json); NQN_FS=$(jq -r .volume.volume_context.nqn /tmp/k/create-fs1.json)
    pass standin.fs-volume "volume $VOL_FS created, PV/PVC bound, attached (publish_context $(jq -c '.publish_context // {}' /tmp/k/pub-fs1.json))"
else
    fail standin.fs-volume "$out"
fi
T=$(up)
UID1=$(pod p1 fs1 Filesystem)
PUB1=$KD/pods/$UID1/volumes/kubernetes.io~csi/pv-fs1/mount
if until_true "$WAIT" pod_running p1; then
    timing kubelet.fs-pod-running "$(since "$T")" "pod created to Running"
    dev=$(mount_source "$GLOBAL_FS"); pdev=$(mount_source "$PUB1")
    if [ -n "$dev" ] && [ "$dev" = "$pdev" ] && [ -n "$(ctrls_of "$NQN_FS")" ]; then
        pass kubelet.fs-pod "pod p1 Running; $dev (NVMe/TCP $NQN_FS via $(ctrls_of "$NQN_FS")) staged at $GLOBAL_FS and published at $PUB1"
    else
        fail kubelet.fs-pod "pod Running but stage=$dev publish=$pdev ctrls=$(ctrls_of "$NQN_FS")"
    fi
    echo hello > "$PUB1/marker" && sync
else
    fail kubelet.fs-pod "pod p1 not Running after ${WAIT}s: $(pod_events p1 | tr '\n' '|')"; tail_logs 40
fi

# ---------------------------------------------------------------- stats
stats_of() { # pvc name -> used/capacity bytes from kubelet's summary
    curl -s --max-time 20 -o /tmp/k/summary.json http://127.0.0.1:10255/stats/summary || return 1
    jq -e -r --arg c "$1" '[.pods[]?.volume[]? | select(.pvcRef.name == $c)][0]
        | select(.capacityBytes > 0) | "\(.usedBytes) used of \(.capacityBytes) (\(.inodesUsed) of \(.inodes) inodes)"' /tmp/k/summary.json
}
if pod_running p1 && until_true "$WAIT" stats_of fs1 > /dev/null; then
    pass kubelet.volume-stats "/stats/summary lists PVC fs1: $(stats_of fs1)"
else
    fail kubelet.volume-stats "no stats for fs1 in /stats/summary: $(head -c 300 /tmp/k/summary.json)"
fi

# ---------------------------------------------------------------- kubelet restart
if pod_running p1; then
    stop-kubelet; start-kubelet; T=$(up)
    sleep 20
    if until_true "$WAIT" pod_running p1 && mounted "$GLOBAL_FS" && mounted "$PUB1" \
       && [ "$(cat "$PUB1/marker" 2>/dev/null)" = hello ] && [ "$(awk -v p="$PUB1" '$5 == p' /proc/self/mountinfo | wc -l)" = 1 ]; then
        pass kubelet.restart "kubelet restarted; 20 s later pod still Running, one mount at each path, data intact"
    else
        fail kubelet.restart "after restart: running=$(pod_running p1 && echo y) stage=$(mount_source "$GLOBAL_FS") publish=$(mount_source "$PUB1")"
    fi
fi

# ---------------------------------------------------------------- node plugin restart
if pod_running p1; then
    n0=$(grep -c "registered plugin" /var/log/registrar.log)
    stop-node-plugin
    start-node-plugin
    T=$(up)
    reregistered() { [ "$(grep -c "registered plugin" /var/log/registrar.log)" -gt "$n0" ]; }
    if until_true "$WAIT" reregistered && until_true "$WAIT" csinode_id > /dev/null; then
        timing plugin.reregistration "$(since "$T")" "plugin restart to kubelet's registration callback"
        pass plugin.restart-reregisters "plugin and registrar restarted; kubelet called GetInfo and NotifyRegistrationStatus(registered) on the new socket; CSINode id $(csinode_id)"
    else
        fail plugin.restart-reregisters "$(tail -n 3 /var/log/registrar.log | tr '\n' '|')"
    fi
fi

# ---------------------------------------------------------------- second pod on the same RWO volume
if pod_running p1; then
    UID2=$(pod p2 fs1 Filesystem)
    PUB2=$KD/pods/$UID2/volumes/kubernetes.io~csi/pv-fs1/mount
    if until_true "$WAIT" pod_running p2 && [ "$(cat "$PUB2/marker" 2>/dev/null)" = hello ]; then
        pass kubelet.shared-rwo "second pod on the node Running with the same volume (after the plugin restart); p1's file visible at $PUB2"
    else
        fail kubelet.shared-rwo "p2: $(pod_events p2 | tr '\n' '|') publish=$(mount_source "$PUB2")"
    fi
fi

# ---------------------------------------------------------------- expansion (kubelet's NodeExpandVolume)
# Stand-in for external-resizer: ControllerExpandVolume, then the PV's capacity and the PVC's
# request raised; kubelet sees PV capacity > PVC status capacity on a mounted volume, calls
# NodeExpandVolume and records the new size in the PVC's status.
fs_bytes() { df -k "$1" 2>/dev/null | awk 'NR == 2 {print $2 * 1024}'; }
pvc_capacity() { api GET /api/v1/namespaces/default/persistentvolumeclaims/fs1 | jq -r '.status.capacity.storage'; }
if pod_running p1; then
    before=$(fs_bytes "$PUB1")
    if csi expand-fs1 expand-volume "$VOL_FS" --size 2Gi; then
        api PATCH /api/v1/persistentvolumes/pv-fs1 '{"spec":{"capacity":{"storage":"2Gi"}}}' application/merge-patch+json > /dev/null
        api PATCH /api/v1/namespaces/default/persistentvolumeclaims/fs1 '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}' \
            application/merge-patch+json > /dev/null
        T=$(up)
        grown() { [ "$(pvc_capacity)" = 2Gi ] && [ "$(fs_bytes "$PUB1")" -gt $((before + 512 * 1024 * 1024)) ]; }
        if until_true "$WAIT" grown; then
            timing kubelet.expand "$(since "$T")" "PV grown to PVC status updated by kubelet"
            pass kubelet.expand "kubelet ran NodeExpandVolume: filesystem at $PUB1 $before -> $(fs_bytes "$PUB1") bytes, PVC status capacity $(pvc_capacity)"
        else
            fail kubelet.expand "PVC capacity $(pvc_capacity), filesystem $before -> $(fs_bytes "$PUB1")"
        fi
    else
        fail kubelet.expand "ControllerExpandVolume: $(head -c 300 /tmp/k/expand-fs1.err)"
    fi
fi

# ---------------------------------------------------------------- target outage while the pod runs
CFG=/sys/kernel/config/nvmet
# The simulator listens on 127.0.0.1 and 127.0.0.2 (two paths, tests/vm/guest-init.sh); the
# controller here publishes 127.0.0.1 only, so that is the port whose loss is an outage.
port_dir() {
    for p in "$CFG"/ports/*; do
        [ "$(cat "$p/addr_trsvcid" 2>/dev/null)" = 4420 ] && [ "$(cat "$p/addr_traddr" 2>/dev/null)" = 127.0.0.1 ] \
            && { echo "$p"; return 0; }
    done
    return 1
}
if pod_running p1 && P=$(port_dir); then
    LINKS=$(ls "$P/subsystems"); PID_=${P##*/}
    for l in $LINKS; do rm "$P/subsystems/$l"; done; rmdir "$P"
    log "outage: port 127.0.0.1:4420 removed for 10 s"
    ( sleep 3; dd if=/dev/urandom of="$PUB1/during-outage.bin" bs=4k count=4 conv=fsync 2>/dev/null; echo $? > /tmp/k/io.rc ) &
    IO=$!
    sleep 10
    P=$CFG/ports/$PID_; mkdir "$P"
    echo tcp > "$P/addr_trtype"; echo ipv4 > "$P/addr_adrfam"; echo 127.0.0.1 > "$P/addr_traddr"; echo 4420 > "$P/addr_trsvcid"
    for l in $LINKS; do ln -s "$CFG/subsystems/$l" "$P/subsystems/$l"; done
    T=$(up)
    io_done() { ! kill -0 "$IO" 2>/dev/null; }
    if until_true 60 io_done && [ "$(cat /tmp/k/io.rc)" = 0 ] && [ "$(cat "$PUB1/marker")" = hello ] && pod_running p1 \
       && [ "$(mount_source "$PUB1")" = "$(mount_source "$GLOBAL_FS")" ]; then
        pass kubelet.target-outage "10 s port outage while p1 runs: a synced write issued during it completed $(since "$T") s after the port returned, data intact, pod Running, same mounts"
    else
        fail kubelet.target-outage "io rc=$(cat /tmp/k/io.rc 2>/dev/null) marker=$(cat "$PUB1/marker" 2>&1) stage=$(mount_source "$GLOBAL_FS") publish=$(mount_source "$PUB1")"
    fi
else
    fail kubelet.target-outage "not run: pod p1 is not Running or no nvmet port listens on 127.0.0.1:4420 ($(ls "$CFG/ports" 2>&1 | tr '\n' ' '))"
fi

# ---------------------------------------------------------------- deletion: unpublish, unstage, disconnect
if [ -n "$UID1" ]; then
    delete_pod p1
    if until_true "$WAIT" pod_gone p1 && until_true 30 not_mounted "$PUB1"; then
        if [ -n "${UID2:-}" ] && pod_running p2; then
            if mounted "$GLOBAL_FS" && [ -n "$(ctrls_of "$NQN_FS")" ]; then
                pass kubelet.delete-one-of-two "p1 deleted: its publish path unmounted, volume still staged for p2"
            else
                fail kubelet.delete-one-of-two "staging gone while p2 still uses the volume"
            fi
        fi
    else
        fail kubelet.delete-unpublish "p1 still there or still mounted at $PUB1"
    fi
    [ -z "${UID2:-}" ] || delete_pod p2
    T=$(up)
    if until_true "$WAIT" pod_gone p2 && until_true "$WAIT" not_mounted "$GLOBAL_FS" && until_true 30 no_ctrl "$NQN_FS" \
       && not_mounted "$PUB1"; then
        timing kubelet.unstage "$(since "$T")" "last pod deleted to NVMe controller gone"
        pass kubelet.delete-unstage "last pod deleted: unpublished, unstaged ($GLOBAL_FS unmounted) and NVMe controller for $NQN_FS disconnected"
    else
        fail kubelet.delete-unstage "stage=$(mount_source "$GLOBAL_FS") ctrls=$(ctrls_of "$NQN_FS")"; tail_logs 20
    fi
fi

# ---------------------------------------------------------------- block PVC
if out=$(pvc blk1 Block 1Gi); then
    NQN_B=$(jq -r .volume.volume_context.nqn /tmp/k/create-blk1.json)
    UIDB=$(pod pb blk1 Block)
    DEVMAP=$KD/plugins/kubernetes.io/csi/volumeDevices/publish/pv-blk1/$UIDB
    if until_true "$WAIT" pod_running pb && { [ -b "$DEVMAP" ] || mounted "$DEVMAP"; }; then
        pass kubelet.block-pod "block pod Running; NVMe namespace of $NQN_B published at $DEVMAP ($(ls -l "$DEVMAP" | awk '{print $1, $5, $6}'))"
    else
        fail kubelet.block-pod "pb: $(pod_events pb | tr '\n' '|'); $(ls -la "$(dirname "$DEVMAP")" 2>&1 | tr '\n' ' ')"
    fi
    delete_pod pb
    if until_true "$WAIT" pod_gone pb && until_true 60 no_ctrl "$NQN_B"; then
        pass kubelet.block-delete "block pod deleted: NVMe controller for $NQN_B disconnected"
    else
        fail kubelet.block-delete "ctrls=$(ctrls_of "$NQN_B")"
    fi
else
    fail standin.block-volume "$out"
fi

# kubelet removes every match of "*" in its working directory when it removes a container whose
# log path is empty; the fake wrapper sets the path, so this file outlives every pod deletion.
if [ -f /run/kubelet-wd/sentinel ]; then
    pass kubelet.workdir-intact "kubelet's working directory kept its file through every container removal"
else
    fail kubelet.workdir-intact "kubelet deleted the files in its working directory (empty container log path)"
fi

if grep -q "older than 1.26" /var/log/node.log; then
    pass plugin.kubelet-version-error "node plugin logged: $(grep -m1 -o 'kubelet v[^ ]* is older than [0-9.]*' /var/log/node.log)"
else
    fail plugin.kubelet-version-error "node plugin did not log the kubelet < 1.26 error"
fi

[ "$FAILED" = 0 ] || tail_logs 30
echo "$PASSED passed, $FAILED failed, 0 skipped"
[ "$FAILED" = 0 ]
