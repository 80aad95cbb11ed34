#![allow(clippy::unwrap_used)]

mod support;

use nvme::{ControllerState, NamespaceKind, Resolver, Sysfs};
use support::*;

fn sysfs(s: &FakeSys) -> Sysfs {
    Sysfs::new(s.root(), s.dev())
}

#[test]
fn multipath_naming_resolves_to_subsystem_head_not_controller_number() {
    // Controller nvme1 belongs to subsystem 2: the device is nvme2n1, and the path device
    // nvme2c1n1 (no /dev node) must never be returned.
    let s = FakeSys::new();
    s.add_subsystem(2, VOL1);
    s.add_controller(1, 2, VOL1, "live", "10.0.0.1", 4420);
    s.add_multipath_ns(2, 1, 1, &[1], 5);

    let d = sysfs(&s).device(VOL1).unwrap().unwrap();
    assert_eq!(d.name, "nvme2n1");
    assert_eq!(d.path, s.dev().join("nvme2n1"));
    assert_eq!(d.dev, Some((259, 5)));
    assert_eq!(d.kind, NamespaceKind::MultipathHead);
    assert_eq!(d.controllers.len(), 1);
    assert_eq!(d.controllers[0].name, "nvme1");
    assert_eq!(d.controllers[0].paths, ["nvme2c1n1"]);
    assert!(
        d.controllers[0]
            .address
            .matches("10.0.0.1".parse().unwrap(), 4420)
    );
}

#[test]
fn plain_naming_resolves_to_controller_namespace() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "live", "10.0.0.1", 4420);
    s.add_plain_ns(0, 1, 1, 0);

    let d = sysfs(&s).device(VOL1).unwrap().unwrap();
    assert_eq!(d.name, "nvme0n1");
    assert_eq!(
        d.kind,
        NamespaceKind::PerController {
            controller: "nvme0".into()
        }
    );
}

#[test]
fn plain_naming_prefers_live_controller_namespace() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "connecting", "10.0.0.1", 4420);
    s.add_controller(1, 0, VOL1, "live", "10.0.0.9", 4420);
    s.add_plain_ns(0, 1, 1, 0);
    s.add_plain_ns(1, 1, 1, 1);
    assert_eq!(sysfs(&s).device(VOL1).unwrap().unwrap().name, "nvme1n1");
}

#[test]
fn two_subsystems_do_not_mix() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_subsystem(1, VOL2);
    s.add_controller(0, 0, VOL1, "live", "10.0.0.1", 4420);
    s.add_controller(1, 1, VOL2, "live", "10.0.0.1", 4420);
    s.add_multipath_ns(0, 1, 1, &[0], 0);
    s.add_multipath_ns(1, 1, 1, &[1], 1);

    let fs = sysfs(&s);
    assert_eq!(fs.device(VOL1).unwrap().unwrap().name, "nvme0n1");
    assert_eq!(fs.device(VOL2).unwrap().unwrap().name, "nvme1n1");
    let all = fs.subsystems().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].controllers[0].name, "nvme1");
    assert!(
        fs.device("nqn.2000-02.com.mikrotik:pvc-other")
            .unwrap()
            .is_none()
    );
}

#[test]
fn renumbered_controller_is_found_by_nqn() {
    // Like the VM run: vol1 was nvme0/nvme0n1, after disconnect + reconnect it is controller
    // nvme3 with block device nvme1n2 while vol2 took nvme0n1.
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "live", "10.0.0.1", 4420);
    s.add_multipath_ns(0, 1, 1, &[0], 0);
    let fs = sysfs(&s);
    assert_eq!(fs.device(VOL1).unwrap().unwrap().name, "nvme0n1");

    s.remove_controller(0);
    s.remove_subsystem(0);
    s.add_subsystem(0, VOL2);
    s.add_controller(0, 0, VOL2, "live", "10.0.0.1", 4421);
    s.add_multipath_ns(0, 1, 1, &[0], 0);
    s.add_subsystem(1, VOL1);
    s.add_controller(3, 1, VOL1, "live", "10.0.0.1", 4420);
    s.add_multipath_ns(1, 2, 1, &[3], 7);

    let d = fs.device(VOL1).unwrap().unwrap();
    assert_eq!(d.name, "nvme1n2");
    assert_eq!(d.controllers[0].name, "nvme3");
    assert_eq!(fs.device(VOL2).unwrap().unwrap().name, "nvme0n1");
}

#[test]
fn resolve_verified_rejects_cached_name_that_now_belongs_to_another_volume() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "live", "10.0.0.1", 4420);
    s.add_multipath_ns(0, 1, 1, &[0], 0);
    let r = Resolver::new(sysfs(&s));
    let v1 = nqn(VOL1);
    assert_eq!(r.resolve_verified(&v1).unwrap().unwrap().name, "nvme0n1");

    // Renumbering: nvme0n1 is now VOL2's; VOL1 lives at nvme1n1.
    s.remove_controller(0);
    s.remove_subsystem(0);
    s.add_subsystem(0, VOL2);
    s.add_controller(0, 0, VOL2, "live", "10.0.0.1", 4421);
    s.add_multipath_ns(0, 1, 1, &[0], 0);
    s.add_subsystem(1, VOL1);
    s.add_controller(1, 1, VOL1, "live", "10.0.0.1", 4420);
    s.add_multipath_ns(1, 1, 1, &[1], 1);

    let d = r.resolve_verified(&v1).unwrap().unwrap();
    assert_eq!(d.name, "nvme1n1");
    assert_eq!(d.controllers[0].name, "nvme1");
}

#[test]
fn resolve_verified_returns_none_once_the_volume_is_gone() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "live", "10.0.0.1", 4420);
    s.add_plain_ns(0, 1, 1, 0);
    let r = Resolver::new(sysfs(&s));
    let v1 = nqn(VOL1);
    assert!(r.resolve_verified(&v1).unwrap().is_some());
    s.remove_controller(0);
    s.remove_subsystem(0);
    assert!(r.resolve_verified(&v1).unwrap().is_none());
}

#[test]
fn resolve_verified_refreshes_controller_state_on_cache_hit() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "live", "10.0.0.1", 4420);
    s.add_multipath_ns(0, 1, 1, &[0], 0);
    let r = Resolver::new(sysfs(&s));
    let v1 = nqn(VOL1);
    r.resolve_verified(&v1).unwrap();
    s.set_state(0, "connecting");
    let d = r.resolve_verified(&v1).unwrap().unwrap();
    assert_eq!(d.controllers[0].state, ControllerState::Connecting);
    assert!(!d.has_live_controller());
}

#[test]
fn empty_or_missing_sysfs_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Sysfs::new(dir.path(), "/dev");
    assert!(fs.subsystems().unwrap().is_empty());
    assert!(fs.device(VOL1).unwrap().is_none());
}

#[test]
fn namespace_without_block_entry_is_not_a_device() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "live", "10.0.0.1", 4420);
    s.add_multipath_ns(0, 1, 1, &[0], 0);
    std::fs::remove_file(s.root().join("class/block/nvme0n1")).unwrap();
    let sub = sysfs(&s).subsystem(VOL1).unwrap().unwrap();
    assert!(sub.namespaces.is_empty());
    assert!(sysfs(&s).device(VOL1).unwrap().is_none());
}

/// Two paths (controllers at two addresses) of one subsystem with native multipath: the device
/// is the subsystem's head whichever path is live, and each configured path reports its own
/// controllers and state; a deleted path is absent, not "connecting".
#[test]
fn two_paths_resolve_to_one_head_and_report_per_path_state() {
    let s = FakeSys::new();
    s.add_subsystem(3, VOL1);
    s.add_controller(4, 3, VOL1, "live", "10.0.0.1", 4420);
    s.add_controller(7, 3, VOL1, "connecting", "10.0.1.1", 4420);
    s.add_multipath_ns(3, 1, 1, &[4, 7], 9);
    let a = nvme::TargetAddress::parse("10.0.0.1", "4420").unwrap();
    let b = nvme::TargetAddress::parse("10.0.1.1", "4420").unwrap();
    let c = nvme::TargetAddress::parse("10.0.2.1", "4420").unwrap();

    let sub = sysfs(&s).subsystem(VOL1).unwrap().unwrap();
    assert_eq!(sub.controllers.len(), 2);
    let d = sysfs(&s).device(VOL1).unwrap().unwrap();
    assert_eq!(d.name, "nvme3n1");
    assert_eq!(d.kind, NamespaceKind::MultipathHead);

    let paths = nvme::path_states(&sub.controllers, &[a, b, c]);
    assert!(paths[0].is_live() && !paths[0].is_absent());
    assert!(!paths[1].is_live() && !paths[1].is_absent());
    assert_eq!(paths[1].describe(), "10.0.1.1:4420 (nvme7=connecting)");
    assert!(paths[2].is_absent());
    assert_eq!(paths[2].describe(), "10.0.2.1:4420 (no controller)");

    // The live path goes away entirely (6.12 deletes it); the head stays with the other path.
    s.remove_controller(4);
    s.set_state(7, "live");
    let d = sysfs(&s).device(VOL1).unwrap().unwrap();
    assert_eq!(d.name, "nvme3n1");
    let sub = sysfs(&s).subsystem(VOL1).unwrap().unwrap();
    let paths = nvme::path_states(&sub.controllers, &[a, b]);
    assert!(paths[0].is_absent());
    assert!(paths[1].is_live());
    assert_eq!(paths[0].name(), "10.0.0.1:4420");
}

#[test]
fn multipath_setting_is_read_from_nvme_core() {
    let s = FakeSys::new();
    assert_eq!(sysfs(&s).multipath().unwrap(), nvme::Multipath::Unknown);
    let params = s.root().join("module/nvme_core/parameters");
    std::fs::create_dir_all(&params).unwrap();
    let m = sysfs(&s).multipath().unwrap();
    assert!(m.is_disabled(), "{m:?}");
    assert!(format!("{m:?}").contains("CONFIG_NVME_MULTIPATH"), "{m:?}");
    std::fs::write(params.join("multipath"), "Y\n").unwrap();
    assert_eq!(sysfs(&s).multipath().unwrap(), nvme::Multipath::Enabled);
    std::fs::write(params.join("multipath"), "N\n").unwrap();
    match sysfs(&s).multipath().unwrap() {
        nvme::Multipath::Disabled { reason } => {
            assert!(reason.contains("nvme_core.multipath=N"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

/// The one-walk view answers every NQN exactly as a lookup of that NQN alone would: multipath
/// head, plain namespaces preferring the live controller, a stray controller without its
/// subsystem entry, and an NQN the host does not have.
#[tokio::test]
async fn the_host_view_answers_each_nqn_like_its_own_lookup() {
    let s = FakeSys::new();
    s.add_subsystem(0, VOL1);
    s.add_controller(0, 0, VOL1, "live", "10.0.0.1", 4420);
    s.add_controller(1, 0, VOL1, "connecting", "10.0.1.1", 4420);
    s.add_multipath_ns(0, 1, 1, &[0, 1], 0);
    s.add_subsystem(1, VOL2);
    s.add_controller(2, 1, VOL2, "connecting", "10.0.0.1", 4420);
    s.add_controller(3, 1, VOL2, "live", "10.0.0.9", 4420);
    s.add_plain_ns(2, 1, 1, 1);
    s.add_plain_ns(3, 1, 1, 2);
    // A controller whose subsystem entry is gone.
    s.add_subsystem(7, BOOT);
    s.add_controller(4, 7, BOOT, "live", "10.0.0.1", 4420);
    s.remove_subsystem(7);

    let ini = nvme::Initiator::new(config(&s), host());
    let view = ini.host_view().await.unwrap();
    let fs = sysfs(&s);
    for n in [VOL1, VOL2, BOOT, "nqn.2000-02.com.mikrotik:pvc-absent"] {
        assert_eq!(
            view.subsystem(&nqn(n)),
            fs.subsystem(n).unwrap().as_ref(),
            "{n}"
        );
        assert_eq!(view.device(&nqn(n)), fs.device(n).unwrap(), "{n}");
    }
    assert_eq!(view.device(&nqn(VOL2)).unwrap().name, "nvme3n1");
    assert_eq!(view.len(), 3);
}
