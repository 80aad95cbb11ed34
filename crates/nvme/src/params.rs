//! Typed connect parameters and the two renderings of them: the `/dev/nvme-fabrics` option string
//! and the nvme-cli argument vector.
//!
//! Both renderings are built only from validated types, so no value can carry a `,` or newline
//! into the kernel's option parser or an extra word onto the command line.

use std::net::IpAddr;

use crate::error::{NvmeError, Result};
use crate::host_identity::HostIdentity;
use crate::nqn::Nqn;

/// Where the target listens: an IP literal (never a host name — resolution would be an
/// unbounded, unlogged network dependency on the node) and a TCP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TargetAddress {
    ip: IpAddr,
    port: u16,
}

impl TargetAddress {
    pub fn new(ip: IpAddr, port: u16) -> Result<Self> {
        if port == 0 {
            return Err(NvmeError::invalid("port", "0", "must be 1-65535"));
        }
        Ok(TargetAddress { ip, port })
    }

    /// Parses the strings a volume context carries (`nvmeAddress`, `nvmePort`).
    pub fn parse(ip: &str, port: &str) -> Result<Self> {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| NvmeError::invalid("IP address", ip, "not an IPv4/IPv6 literal"))?;
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NvmeError::invalid("port", port, "not a decimal number"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| NvmeError::invalid("port", port, "must be 1-65535"))?;
        TargetAddress::new(ip, port)
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// How long the kernel keeps reconnecting after losing the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CtrlLossTmo {
    /// Reconnect forever (`-1`): I/O blocks during an outage instead of failing the filesystem.
    #[default]
    Unlimited,
    /// Leave the option out and take the kernel default (600 s).
    KernelDefault,
    /// Give up after this many seconds.
    Seconds(u32),
}

impl CtrlLossTmo {
    /// From the volume-context integer: -1 unlimited, 0 kernel default, >0 seconds.
    pub fn from_i64(v: i64) -> Result<Self> {
        match v {
            -1 => Ok(CtrlLossTmo::Unlimited),
            0 => Ok(CtrlLossTmo::KernelDefault),
            n if n > 0 => u32::try_from(n)
                .map(CtrlLossTmo::Seconds)
                .map_err(|_| NvmeError::invalid("ctrl_loss_tmo", n.to_string(), "too large")),
            n => Err(NvmeError::invalid(
                "ctrl_loss_tmo",
                n.to_string(),
                "must be -1, 0 or positive",
            )),
        }
    }

    fn render(self) -> Option<String> {
        match self {
            CtrlLossTmo::Unlimited => Some("-1".into()),
            CtrlLossTmo::KernelDefault => None,
            CtrlLossTmo::Seconds(n) => Some(n.to_string()),
        }
    }
}

/// Seconds between reconnect attempts unless the StorageClass says otherwise
/// (`reconnectDelay`, docs/configuration.md).
pub const DEFAULT_RECONNECT_DELAY: std::num::NonZeroU32 = match std::num::NonZeroU32::new(5) {
    Some(v) => v,
    None => std::num::NonZeroU32::MIN,
};

/// Everything needed to connect one volume's subsystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectParams {
    pub nqn: Nqn,
    pub target: TargetAddress,
    pub ctrl_loss_tmo: CtrlLossTmo,
    /// Seconds between kernel reconnect attempts; the kernel rejects 0, so the type forbids it.
    pub reconnect_delay: std::num::NonZeroU32,
    /// Keep-alive timeout in seconds. `None` leaves the kernel default: writing
    /// `keep_alive_tmo=0` would *disable* keep-alives, not select the default.
    pub keep_alive_tmo: Option<std::num::NonZeroU32>,
    /// I/O queue count; `None` lets the kernel pick (one per CPU).
    pub nr_io_queues: Option<std::num::NonZeroU32>,
}

impl ConnectParams {
    /// Parameters with the driver's defaults: reconnect forever, every 5 s, kernel keep-alive.
    pub fn new(nqn: Nqn, target: TargetAddress) -> Self {
        ConnectParams {
            nqn,
            target,
            ctrl_loss_tmo: CtrlLossTmo::Unlimited,
            reconnect_delay: DEFAULT_RECONNECT_DELAY,
            keep_alive_tmo: None,
            nr_io_queues: None,
        }
    }

    /// The line written to `/dev/nvme-fabrics`. `hostid` is always included: kernel 6.12 rejects
    /// a host NQN whose UUID differs from the (otherwise random) default host id.
    pub fn fabrics_options(&self, host: &HostIdentity) -> String {
        let mut parts = vec![
            "transport=tcp".to_string(),
            format!("traddr={}", self.target.ip),
            format!("trsvcid={}", self.target.port),
            format!("nqn={}", self.nqn),
            format!("hostnqn={}", host.hostnqn()),
            format!("hostid={}", host.hostid()),
        ];
        if let Some(v) = self.ctrl_loss_tmo.render() {
            parts.push(format!("ctrl_loss_tmo={v}"));
        }
        parts.push(format!("reconnect_delay={}", self.reconnect_delay));
        if let Some(v) = self.keep_alive_tmo {
            parts.push(format!("keep_alive_tmo={v}"));
        }
        if let Some(v) = self.nr_io_queues {
            parts.push(format!("nr_io_queues={v}"));
        }
        parts.join(",")
    }

    /// Arguments for `nvme connect` (without the program name). `--opt=value` form keeps
    /// `-1` from being read as a flag.
    pub fn nvme_cli_args(&self, host: &HostIdentity) -> Vec<String> {
        let mut args = vec![
            "connect".to_string(),
            "-t".into(),
            "tcp".into(),
            "-a".into(),
            self.target.ip.to_string(),
            "-s".into(),
            self.target.port.to_string(),
            "-n".into(),
            self.nqn.to_string(),
            format!("--hostnqn={}", host.hostnqn()),
            format!("--hostid={}", host.hostid()),
        ];
        if let Some(v) = self.ctrl_loss_tmo.render() {
            args.push(format!("--ctrl-loss-tmo={v}"));
        }
        args.push(format!("--reconnect-delay={}", self.reconnect_delay));
        if let Some(v) = self.keep_alive_tmo {
            args.push(format!("--keep-alive-tmo={v}"));
        }
        if let Some(v) = self.nr_io_queues {
            args.push(format!("--nr-io-queues={v}"));
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn host() -> HostIdentity {
        HostIdentity::from_uuid(
            uuid::Uuid::parse_str("7f1c0d1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f").unwrap(),
        )
        .unwrap()
    }

    fn params() -> ConnectParams {
        ConnectParams::new(
            Nqn::new("nqn.2000-02.com.mikrotik:pvc-1").unwrap(),
            TargetAddress::parse("10.42.68.1", "4420").unwrap(),
        )
    }

    #[test]
    fn default_options_string() {
        assert_eq!(
            params().fabrics_options(&host()),
            "transport=tcp,traddr=10.42.68.1,trsvcid=4420,nqn=nqn.2000-02.com.mikrotik:pvc-1,\
             hostnqn=nqn.2014-08.org.nvmexpress:uuid:7f1c0d1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f,\
             hostid=7f1c0d1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f,ctrl_loss_tmo=-1,reconnect_delay=5"
        );
    }

    #[test]
    fn all_options_and_ipv6() {
        let mut p = params();
        p.target = TargetAddress::parse("fd00::1", "4421").unwrap();
        p.ctrl_loss_tmo = CtrlLossTmo::Seconds(60);
        p.reconnect_delay = NonZeroU32::new(2).unwrap();
        p.keep_alive_tmo = NonZeroU32::new(15);
        p.nr_io_queues = NonZeroU32::new(4);
        let s = p.fabrics_options(&host());
        assert!(
            s.starts_with("transport=tcp,traddr=fd00::1,trsvcid=4421,"),
            "{s}"
        );
        assert!(
            s.ends_with(",ctrl_loss_tmo=60,reconnect_delay=2,keep_alive_tmo=15,nr_io_queues=4"),
            "{s}"
        );
    }

    #[test]
    fn kernel_default_ctrl_loss_is_omitted() {
        let mut p = params();
        p.ctrl_loss_tmo = CtrlLossTmo::from_i64(0).unwrap();
        assert!(!p.fabrics_options(&host()).contains("ctrl_loss_tmo"));
        assert!(
            !p.nvme_cli_args(&host())
                .iter()
                .any(|a| a.contains("ctrl-loss"))
        );
    }

    #[test]
    fn cli_args() {
        let a = params().nvme_cli_args(&host());
        assert_eq!(
            a,
            [
                "connect",
                "-t",
                "tcp",
                "-a",
                "10.42.68.1",
                "-s",
                "4420",
                "-n",
                "nqn.2000-02.com.mikrotik:pvc-1",
                "--hostnqn=nqn.2014-08.org.nvmexpress:uuid:7f1c0d1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f",
                "--hostid=7f1c0d1e-2f3a-4b5c-8d9e-0a1b2c3d4e5f",
                "--ctrl-loss-tmo=-1",
                "--reconnect-delay=5",
            ]
        );
    }

    #[test]
    fn rejects_bad_addresses() {
        for (ip, port) in [
            ("rds.local", "4420"),
            ("10.0.0.1,traddr=1.2.3.4", "4420"),
            ("10.0.0.1", "0"),
            ("10.0.0.1", "65536"),
            ("10.0.0.1", "-1"),
            ("10.0.0.1", "+4420"),
            ("10.0.0.1", ""),
            ("10.0.0.1", "44 20"),
            ("", "4420"),
        ] {
            assert!(
                TargetAddress::parse(ip, port).is_err(),
                "accepted {ip:?}:{port:?}"
            );
        }
        assert_eq!(TargetAddress::parse("10.0.0.1", "1").unwrap().port(), 1);
        assert_eq!(
            TargetAddress::parse("10.0.0.1", "65535").unwrap().port(),
            65535
        );
    }

    #[test]
    fn ctrl_loss_tmo_range() {
        assert_eq!(CtrlLossTmo::from_i64(-1).unwrap(), CtrlLossTmo::Unlimited);
        assert_eq!(CtrlLossTmo::from_i64(30).unwrap(), CtrlLossTmo::Seconds(30));
        assert!(CtrlLossTmo::from_i64(-2).is_err());
        assert!(CtrlLossTmo::from_i64(i64::from(u32::MAX) + 1).is_err());
    }
}
