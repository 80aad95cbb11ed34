# The node plugin's boundary and its isolation on the real kernel: requests naming paths outside
# the kubelet directory (or reaching out through a symlink) are refused and touch nothing; a
# volume whose target stopped answering, with a kernel call stuck on it, does not stop another
# volume from being staged and published; publish_context's address wins over volume_context's.
# Sourced by /scenario.sh (busybox ash): uses its helpers and counters. The plugin runs with
# --kubelet-dir /run/kubelet ($K), see guest-init.sh.

NB=/tmp/nb
mkdir -p "$NB"
NB_BASE=$K/plugins/kubernetes.io/csi/rds.csi.srvlab.io

# nb_refused NAME CODE ARGS... : the RPC fails with CODE.
nb_refused() {
    local name=$1 code=$2; shift 2
    if csi "$name" "$@"; then
        fail "$name" "succeeded; expected $code"
        return 1
    elif grep -q "$code: " "/tmp/csi/$name.err"; then
        return 0
    fi
    fail "$name" "expected $code: $(err "$name")"
    return 1
}
# nb_create TAG : an ext4 volume; sets NB_VOL, NB_NQN, NB_CTX, NB_STAGE, NB_PUB.
nb_create() {
    csi "nb.create.$1" create-volume --name "pvc-vm-nb-$1" --size 1Gi --fs-type ext4 || return 1
    NB_VOL=$(jqf "nb.create.$1" .volume.volume_id); NB_NQN=$(jqf "nb.create.$1" .volume.volume_context.nqn)
    NB_CTX=$(ctx_args "nb.create.$1")
    NB_STAGE=$NB_BASE/nb-$1/globalmount
    NB_PUB=$K/pods/pod-nb-$1/volumes/kubernetes.io~csi/pvc-vm-nb-$1/mount
}
nb_mounts() { wc -l < /proc/self/mountinfo; }

# ======================================================= 1. paths outside the kubelet dir
if nb_create p; then
    P_VOL=$NB_VOL; P_CTX=$NB_CTX; P_STAGE=$NB_STAGE
    # shellcheck disable=SC2086
    if csi nb.stage.p node-stage "$P_VOL" --staging-path "$P_STAGE" --fs-type ext4 $P_CTX; then
        before=$(nb_mounts)
        echo "precious" > "$NB/precious.txt"
        mkdir -p "$NB/outside" "$K/pods"
        ln -sfn "$NB/outside" "$K/pods/pod-nb-link"
        ok=1; why=""
        # shellcheck disable=SC2086
        nb_refused nb.pub.etc INVALID_ARGUMENT node-publish "$P_VOL" --staging-path "$P_STAGE" \
            --target-path /etc/rds-csi-nb-evil --fs-type ext4 $P_CTX || ok=0
        [ -e /etc/rds-csi-nb-evil ] && { ok=0; why="$why /etc/rds-csi-nb-evil created;"; }
        # shellcheck disable=SC2086
        nb_refused nb.pub.dotdot INVALID_ARGUMENT node-publish "$P_VOL" --staging-path "$P_STAGE" \
            --target-path "$K/pods/../../../etc/rds-csi-nb-evil2" --fs-type ext4 $P_CTX || ok=0
        [ -e /etc/rds-csi-nb-evil2 ] && { ok=0; why="$why /etc/rds-csi-nb-evil2 created;"; }
        # shellcheck disable=SC2086
        nb_refused nb.pub.link INVALID_ARGUMENT node-publish "$P_VOL" --staging-path "$P_STAGE" \
            --target-path "$K/pods/pod-nb-link/volumes/kubernetes.io~csi/x/mount" --fs-type ext4 $P_CTX || ok=0
        [ -e "$NB/outside/volumes" ] && { ok=0; why="$why mkdir followed the symlink;"; }
        nb_refused nb.unpub.file INVALID_ARGUMENT node-unpublish "$P_VOL" --target-path "$NB/precious.txt" || ok=0
        nb_refused nb.unpub.link INVALID_ARGUMENT node-unpublish "$P_VOL" --target-path "$K/pods/pod-nb-link" || ok=0
        [ "$(cat "$NB/precious.txt" 2>/dev/null)" = precious ] || { ok=0; why="$why precious.txt changed;"; }
        [ -L "$K/pods/pod-nb-link" ] || { ok=0; why="$why the symlink was removed;"; }
        [ "$(nb_mounts)" = "$before" ] || { ok=0; why="$why mount table changed ($before -> $(nb_mounts));"; }
        if [ $ok = 1 ]; then
            pass node.boundary.paths "publish to /etc, via .., via a symlink, and unpublish of a foreign file: INVALID_ARGUMENT, nothing created, mounted or removed"
        else
            fail node.boundary.paths "$why $(err nb.pub.etc)"
        fi
        rm -f "$K/pods/pod-nb-link"
        csi nb.unstage.p node-unstage "$P_VOL" --staging-path "$P_STAGE" || fail node.boundary.paths.teardown "$(err nb.unstage.p)"
    else
        fail node.boundary.paths "stage: $(err nb.stage.p)"
    fi
    csi nb.delete.p delete-volume "$P_VOL"
else
    fail node.boundary.paths "create: $(err nb.create.p)"
fi

# ======================================================= 2. publish_context wins
# volume_context names an address nothing listens on; publish_context the real one.
if nb_create c; then
    # shellcheck disable=SC2086
    if csi nb.stage.c node-stage "$NB_VOL" --staging-path "$NB_STAGE" --fs-type ext4 $NB_CTX \
        --context=nvmeAddress=127.0.0.9 --publish-context "nvme_address=127.0.0.1" \
        --publish-context "nvme_port=$PORT" --publish-context "nvme_nqn=$NB_NQN" \
        && [ "$(mount_count "$NB_STAGE")" = 1 ] && live_ctrl "$NB_NQN"; then
        pass node.publish-context "staged through publish_context's 127.0.0.1:$PORT although volume_context says 127.0.0.9 (nothing listens there)"
    else
        fail node.publish-context "$(err nb.stage.c) mounts=$(mount_count "$NB_STAGE")"
    fi
    csi nb.unstage.c node-unstage "$NB_VOL" --staging-path "$NB_STAGE"
    csi nb.delete.c delete-volume "$NB_VOL"
else
    fail node.publish-context "create: $(err nb.create.c)"
fi

# ======================================================= 3. a stuck volume does not stop another
# S holds dirty data when its subsystem disappears (ctrl_loss_tmo -1: I/O waits forever), so
# NodeUnstageVolume's umount of S sits in the kernel. Meanwhile O, on the same node and port,
# must stage and publish as usual.
if nb_create s; then
    S_VOL=$NB_VOL; S_NQN=$NB_NQN; S_CTX=$NB_CTX; S_STAGE=$NB_STAGE; S_PUB=$NB_PUB
    # shellcheck disable=SC2086
    if csi nb.stage.s node-stage "$S_VOL" --staging-path "$S_STAGE" --fs-type ext4 $S_CTX \
       && csi nb.pub.s node-publish "$S_VOL" --staging-path "$S_STAGE" --target-path "$S_PUB" --fs-type ext4 $S_CTX \
       && nb_create o; then
        O_VOL=$NB_VOL; O_CTX=$NB_CTX; O_STAGE=$NB_STAGE; O_PUB=$NB_PUB
        dd if=/dev/urandom of="$S_PUB/dirty.bin" bs=1M count=8 2>/dev/null
        csi nb.unpub.s node-unpublish "$S_VOL" --target-path "$S_PUB"
        subsys_down "$S_NQN"
        rm -f "$NB/s.rc"
        ( csi nb.unstage.s node-unstage "$S_VOL" --staging-path "$S_STAGE"; echo $? > "$NB/s.rc" ) &
        sleep 3
        t0=$(up)
        # shellcheck disable=SC2086
        if csi nb.stage.o node-stage "$O_VOL" --staging-path "$O_STAGE" --fs-type ext4 $O_CTX \
           && csi nb.pub.o node-publish "$O_VOL" --staging-path "$O_STAGE" --target-path "$O_PUB" --fs-type ext4 $O_CTX \
           && echo other > "$O_PUB/marker.txt" && io_works "$O_PUB" 20; then
            o_s=$(since "$t0")
            if [ -s "$NB/s.rc" ]; then
                skip node.stuck.other-volume "S's unstage returned ($(cat "$NB/s.rc"): $(err nb.unstage.s)) before O was done: nothing was stuck to prove isolation against"
            else
                pass node.stuck.other-volume "O staged, published and written in ${o_s}s while S's unstage was stuck in the kernel"
                timing nb.other-volume "$o_s" "stage+publish+write of a volume while another volume's umount hangs"
            fi
        else
            fail node.stuck.other-volume "stage: $(err nb.stage.o) publish: $(err nb.pub.o)"
        fi
        # A retry of S while the first is stuck answers (it never piles another umount on it).
        t1=$(up)
        if ! csi nb.unstage.s2 node-unstage "$S_VOL" --staging-path "$S_STAGE"; then
            log "retry of the stuck unstage after $(since "$t1")s: $(err nb.unstage.s2)"
        fi
        subsys_up "$S_NQN"
        i=0; while [ ! -s "$NB/s.rc" ] && [ $i -lt 900 ]; do sleep 0.1; i=$((i+1)); done
        i=0; until csi nb.unstage.s3 node-unstage "$S_VOL" --staging-path "$S_STAGE"; do
            i=$((i+1)); [ $i -lt 10 ] || { fail node.stuck.teardown "S: $(err nb.unstage.s3)"; break; }; sleep 3
        done
        csi nb.unpub.o node-unpublish "$O_VOL" --target-path "$O_PUB"
        csi nb.unstage.o node-unstage "$O_VOL" --staging-path "$O_STAGE" || fail node.stuck.teardown "O: $(err nb.unstage.o)"
        csi nb.delete.o delete-volume "$O_VOL"
    else
        fail node.stuck.other-volume "setup: $(err nb.stage.s) $(err nb.pub.s) $(err nb.create.o)"
    fi
    csi nb.delete.s delete-volume "$S_VOL"
else
    fail node.stuck.other-volume "create: $(err nb.create.s)"
fi
