//! Disks, backing files and pool capacity: the state a real RDS keeps, and the rules it
//! enforces on `/disk` and `/file` commands.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::command::{Arg, Cond, Request, Value, all_match};
use crate::config::Storage;
use crate::render;
use crate::style::OutputStyle;

/// A `/disk` entry as the simulator holds it (snapshot for test assertions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDisk {
    pub slot: String,
    /// Absolute RDS path of the backing file (`/storage-pool/…/x.img`).
    pub file_path: String,
    pub size: u64,
    pub nvme_export: bool,
    pub nvme_port: Option<u16>,
    pub nvme_nqn: Option<String>,
    /// `nvme-tcp-server-allow-host-name`; empty allows any host.
    pub allow_host: String,
}

/// A backing file on the pool. Files outlive their disks, as on real hardware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFile {
    /// Absolute RDS path (`/storage-pool/…`); `/file print` shows it without the leading `/`.
    pub path: String,
    pub size: u64,
    pub last_modified: SystemTime,
}

/// Hook for really exporting disks (e.g. Linux nvmet via configfs). Called only for disks with
/// `nvme-tcp-export=yes`; the default methods do nothing, so the simulator works without one.
pub trait Exporter: Send + Sync + fmt::Debug {
    /// A refusal fails the `/disk add` (printed as `failure: <text>`) and nothing is created.
    /// `backing` is the real file when storage is a directory.
    fn on_add(&self, disk: &SimDisk, backing: Option<&Path>) -> Result<(), String> {
        let _ = (disk, backing);
        Ok(())
    }
    /// After `/disk set` changed the size of an exported disk.
    fn on_resize(&self, disk: &SimDisk) {
        let _ = disk;
    }
    fn on_remove(&self, disk: &SimDisk) {
        let _ = disk;
    }
    /// After `/disk set nvme-tcp-server-allow-host-name=` changed who may connect. A refusal
    /// fails the `/disk set` and the model keeps the previous value.
    fn on_allow_host(&self, disk: &SimDisk) -> Result<(), String> {
        let _ = disk;
        Ok(())
    }
}

/// The default: disks are only bookkeeping.
#[derive(Debug, Default)]
pub struct NoExporter;

impl Exporter for NoExporter {}

/// Result of one command: stdout text, or a RouterOS failure text.
pub(crate) type Outcome = Result<String, String>;

fn failure(text: &str) -> String {
    format!("failure: {text}")
}

pub(crate) struct Model {
    pub pool: String,
    pub capacity: u64,
    storage: Storage,
    exporter: Arc<dyn Exporter>,
    pub disks: Vec<SimDisk>,
    /// Keyed by absolute path.
    pub files: BTreeMap<String, SimFile>,
}

/// Binary-unit size as `/disk add file-size=` accepts it: `10G`, `512M`, `1048576`.
/// Fractions and anything else are refused, as RouterOS does for integer arguments.
pub(crate) fn parse_size_arg(s: &str) -> Option<u64> {
    let (digits, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'M') => (&s[..i], 1 << 20),
        (i, 'G') => (&s[..i], 1 << 30),
        (i, 'T') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

fn str_arg<'a>(args: &'a [Arg], key: &str) -> Option<&'a str> {
    args.iter()
        .find(|a| a.key == key)
        .and_then(|a| match &a.value {
            Value::Str(s) => Some(s.as_str()),
            Value::Find(_) => None,
        })
}

impl Model {
    pub fn new(pool: String, capacity: u64, storage: Storage, exporter: Arc<dyn Exporter>) -> Self {
        Model {
            pool,
            capacity,
            storage,
            exporter,
            disks: Vec::new(),
            files: BTreeMap::new(),
        }
    }

    pub fn used(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    fn backing(&self, path: &str) -> Option<PathBuf> {
        match &self.storage {
            Storage::Memory => None,
            Storage::Dir(dir) => Some(dir.join(path.trim_start_matches('/'))),
        }
    }

    /// Property lookup used by `where`/`[find]` on disks.
    fn disk_prop<'a>(d: &'a SimDisk, key: &str) -> Option<&'a str> {
        match key {
            "slot" => Some(&d.slot),
            "file-path" | "model" => Some(&d.file_path),
            "type" => Some("file"),
            "nvme-tcp-server-nqn" => d.nvme_nqn.as_deref(),
            "nvme-tcp-export" => Some(if d.nvme_export { "yes" } else { "no" }),
            "nvme-tcp-server-allow-host-name" => Some(&d.allow_host),
            _ => None,
        }
    }

    fn pool_prop<'a>(&'a self, key: &str) -> Option<&'a str> {
        match key {
            "slot" | "mount-point" => Some(&self.pool),
            "type" => Some("partition"),
            "file-system" => Some("btrfs"),
            _ => None,
        }
    }

    pub fn execute(
        &mut self,
        req: &Request,
        disk_full: bool,
        uptime: &str,
        style: OutputStyle,
    ) -> Outcome {
        match req {
            Request::DiskAdd(args) => self.disk_add(args, disk_full).map(|()| String::new()),
            Request::DiskPrint(conds) => Ok(self.disk_print(conds, style)),
            Request::DiskSet { find, args } => {
                self.disk_set(find, args, disk_full).map(|()| String::new())
            }
            Request::DiskRemove(find) => {
                self.disk_remove(find);
                Ok(String::new())
            }
            Request::FilePrint(conds) => Ok(self.file_print(conds, style)),
            Request::FileRemove(find) => self.file_remove(find).map(|()| String::new()),
            Request::SystemResource => Ok(render::system_resource(
                uptime,
                self.capacity - self.used().min(self.capacity),
                self.capacity,
            )),
            Request::SystemIdentity => Ok("name: rds-sim\r\n".to_string()),
        }
    }

    fn disk_add(&mut self, args: &[Arg], disk_full: bool) -> Result<(), String> {
        const KNOWN: &[&str] = &[
            "type",
            "file-path",
            "file-size",
            "slot",
            "nvme-tcp-export",
            "nvme-tcp-server-port",
            "nvme-tcp-server-nqn",
            "nvme-tcp-server-allow-host-name",
            "copy-from",
            "comment",
        ];
        if let Some(a) = args.iter().find(|a| !KNOWN.contains(&a.key.as_str())) {
            return Err(format!(
                "expected end of command (line 1 column {})",
                a.column
            ));
        }
        let copy_from = match args.iter().find(|a| a.key == "copy-from").map(|a| &a.value) {
            None => None,
            Some(Value::Find(conds)) => Some(conds),
            Some(Value::Str(_)) => return Err(failure("invalid value for argument copy-from")),
        };
        let (Some(slot), Some(file_path)) = (str_arg(args, "slot"), str_arg(args, "file-path"))
        else {
            return Err(failure("missing required parameters"));
        };
        let size_arg = match str_arg(args, "file-size") {
            Some(s) => Some(
                parse_size_arg(s).ok_or_else(|| failure("invalid value for argument file-size"))?,
            ),
            None if copy_from.is_none() => return Err(failure("missing required parameters")),
            None => None,
        };
        if let Some(t) = str_arg(args, "type")
            && t != "file"
        {
            return Err(failure("rds-sim only supports type=file"));
        }
        let nvme_export = match str_arg(args, "nvme-tcp-export") {
            None | Some("no") => false,
            Some("yes") => true,
            Some(_) => return Err(failure("invalid value for argument nvme-tcp-export")),
        };
        let nvme_port = match str_arg(args, "nvme-tcp-server-port") {
            None => None,
            Some(text) => match text.parse::<u16>() {
                Ok(p) if p > 0 && p.to_string() == text => Some(p),
                _ => return Err(failure("invalid value for argument nvme-tcp-server-port")),
            },
        };
        let nvme_nqn = str_arg(args, "nvme-tcp-server-nqn").map(str::to_string);
        if nvme_export && nvme_nqn.is_none() {
            return Err(failure("missing required parameters"));
        }
        if !file_path.starts_with('/')
            || file_path.split('/').nth(1) != Some(self.pool.as_str())
            || file_path.ends_with('/')
            || file_path
                .split('/')
                .skip(1)
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(failure("invalid value for argument file-path"));
        }
        if self.disks.iter().any(|d| d.slot == slot) {
            return Err(failure("slot already exists"));
        }
        if self.files.contains_key(file_path) {
            return Err(failure("file already exists"));
        }
        let source = match copy_from {
            None => None,
            Some(conds) => Some(
                self.disks
                    .iter()
                    .find(|d| all_match(conds, |k| Self::disk_prop(d, k)))
                    .cloned()
                    .ok_or_else(|| failure("no such item"))?,
            ),
        };
        let size = match (size_arg, &source) {
            (Some(s), Some(src)) if s < src.size => {
                return Err(failure("invalid value for argument file-size"));
            }
            (Some(s), _) => s,
            (None, Some(src)) => src.size,
            (None, None) => return Err(failure("missing required parameters")),
        };
        if disk_full || self.used().saturating_add(size) > self.capacity {
            return Err(failure("not enough space"));
        }
        let disk = SimDisk {
            slot: slot.to_string(),
            file_path: file_path.to_string(),
            size,
            nvme_export,
            nvme_port: if nvme_export {
                Some(nvme_port.unwrap_or(4420))
            } else {
                nvme_port
            },
            nvme_nqn,
            allow_host: str_arg(args, "nvme-tcp-server-allow-host-name")
                .unwrap_or_default()
                .to_string(),
        };
        let backing = self.backing(file_path);
        if let Some(path) = &backing {
            let src = source.as_ref().and_then(|s| self.backing(&s.file_path));
            create_backing(path, src.as_deref(), size)
                .map_err(|e| failure(&format!("could not create file: {e}")))?;
        }
        if nvme_export && let Err(e) = self.exporter.on_add(&disk, backing.as_deref()) {
            if let Some(path) = &backing {
                let _ = std::fs::remove_file(path);
            }
            return Err(failure(&e));
        }
        self.files.insert(
            file_path.to_string(),
            SimFile {
                path: file_path.to_string(),
                size,
                last_modified: SystemTime::now(),
            },
        );
        self.disks.push(disk);
        Ok(())
    }

    fn disk_set(&mut self, find: &[Cond], args: &[Arg], disk_full: bool) -> Result<(), String> {
        const KNOWN: &[&str] = &["file-size", "nvme-tcp-server-allow-host-name", "comment"];
        if let Some(a) = args.iter().find(|a| !KNOWN.contains(&a.key.as_str())) {
            return Err(format!(
                "expected end of command (line 1 column {})",
                a.column
            ));
        }
        let new_size = match str_arg(args, "file-size") {
            Some(s) => Some(
                parse_size_arg(s).ok_or_else(|| failure("invalid value for argument file-size"))?,
            ),
            None => None,
        };
        let allow = str_arg(args, "nvme-tcp-server-allow-host-name");
        if new_size.is_none() && allow.is_none() {
            return Err(failure("file-size required"));
        }
        // `[find]` matching nothing is a silent no-op on RouterOS; only the first match is used,
        // as a set on several disks at once is never what the driver means.
        let Some(idx) = self
            .disks
            .iter()
            .position(|d| all_match(find, |k| Self::disk_prop(d, k)))
        else {
            return Ok(());
        };
        if let Some(size) = new_size {
            let old = self.disks[idx].size;
            let path = self.disks[idx].file_path.clone();
            if size > old && (disk_full || self.used() - old + size > self.capacity) {
                return Err(failure("not enough space"));
            }
            if let Some(b) = self.backing(&path) {
                resize_backing(&b, size)
                    .map_err(|e| failure(&format!("could not resize file: {e}")))?;
            }
            self.disks[idx].size = size;
            if let Some(f) = self.files.get_mut(&path) {
                f.size = size;
                f.last_modified = SystemTime::now();
            }
            if self.disks[idx].nvme_export {
                self.exporter.on_resize(&self.disks[idx]);
            }
        }
        if let Some(a) = allow
            && self.disks[idx].allow_host != a
        {
            let before = std::mem::replace(&mut self.disks[idx].allow_host, a.to_string());
            if self.disks[idx].nvme_export
                && let Err(e) = self.exporter.on_allow_host(&self.disks[idx])
            {
                self.disks[idx].allow_host = before;
                return Err(failure(&e));
            }
        }
        Ok(())
    }

    /// Leaves the backing file in place: real hardware does, and the driver must clean it up.
    fn disk_remove(&mut self, find: &[Cond]) {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.disks)
            .into_iter()
            .partition(|d| all_match(find, |k| Self::disk_prop(d, k)));
        self.disks = kept;
        for d in gone.iter().filter(|d| d.nvme_export) {
            self.exporter.on_remove(d);
        }
    }

    fn disk_print(&self, conds: &[Cond], style: OutputStyle) -> String {
        let mut records = Vec::new();
        if all_match(conds, |k| self.pool_prop(k)) {
            records.push(render::pool_record(
                &self.pool,
                self.capacity,
                self.used(),
                style,
            ));
        }
        for d in &self.disks {
            if all_match(conds, |k| Self::disk_prop(d, k)) {
                records.push(render::disk_record(d, style));
            }
        }
        style.finish(render::listing(Some(render::DISK_FLAGS), &records))
    }

    /// Every file plus the directories that hold them, keyed by RouterOS name (no leading `/`).
    fn file_entries(&self) -> BTreeMap<String, (Option<u64>, SystemTime)> {
        let mut out: BTreeMap<String, (Option<u64>, SystemTime)> = BTreeMap::new();
        out.insert(self.pool.clone(), (None, SystemTime::UNIX_EPOCH));
        for f in self.files.values() {
            let name = f.path.trim_start_matches('/');
            let mut dir = name;
            while let Some((parent, _)) = dir.rsplit_once('/') {
                let e = out
                    .entry(parent.to_string())
                    .or_insert((None, SystemTime::UNIX_EPOCH));
                e.1 = e.1.max(f.last_modified);
                dir = parent;
            }
            out.insert(name.to_string(), (Some(f.size), f.last_modified));
        }
        out
    }

    fn file_print(&self, conds: &[Cond], style: OutputStyle) -> String {
        let records: Vec<String> = self
            .file_entries()
            .iter()
            .filter(|(name, (size, _))| {
                let kind = file_type(name, *size);
                all_match(conds, |k| match k {
                    "name" => Some(name.as_str()),
                    "type" => Some(kind.as_str()),
                    _ => None,
                })
            })
            .map(|(name, (size, modified))| render::file_record(name, *size, *modified, style))
            .collect();
        style.finish(render::listing(None, &records))
    }

    /// Refuses to delete the file of a live disk: a driver that tries is deleting live data,
    /// and the simulator should make it loud.
    fn file_remove(&mut self, find: &[Cond]) -> Result<(), String> {
        let matching: Vec<String> = self
            .files
            .keys()
            .filter(|p| {
                let name = p.trim_start_matches('/');
                all_match(find, |k| (k == "name").then_some(name))
            })
            .cloned()
            .collect();
        if matching
            .iter()
            .any(|p| self.disks.iter().any(|d| &d.file_path == p))
        {
            return Err(failure("file is in use"));
        }
        for p in matching {
            if let Some(b) = self.backing(&p) {
                match std::fs::remove_file(&b) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(failure(&format!("could not remove file: {e}"))),
                }
            }
            self.files.remove(&p);
        }
        Ok(())
    }
}

/// RouterOS file types are words: `directory`, or `<ext> file` (`.img file`).
pub(crate) fn file_type(name: &str, size: Option<u64>) -> String {
    match size {
        None => "directory".to_string(),
        Some(_) => {
            let base = name.rsplit('/').next().unwrap_or(name);
            match base.rfind('.') {
                Some(i) if i > 0 => format!("{} file", &base[i..]),
                _ => "file".to_string(),
            }
        }
    }
}

fn create_backing(path: &Path, copy_from: Option<&Path>, size: u64) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match copy_from {
        Some(src) => sparse_copy(src, path)?,
        None => {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
        }
    }
    resize_backing(path, size)
}

/// Copies `src` to a new file at `dst`, leaving zero blocks as holes. `std::fs::copy` would
/// write every zero of a sparse 1 GiB image (copy_file_range does not keep holes on ext4), so a
/// test taking a few snapshots would write gigabytes; RouterOS's copy on Btrfs shares extents
/// instead, and a sparse copy is the closest cheap stand-in. Content is byte for byte the same.
fn sparse_copy(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    const CHUNK: usize = 1 << 20;
    let mut from = std::fs::File::open(src)?;
    let len = from.metadata()?.len();
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)?;
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if chunk.iter().any(|b| *b != 0) {
            to.seek(SeekFrom::Start(offset))?;
            to.write_all(chunk)?;
        }
        offset += n as u64;
    }
    to.set_len(len)?;
    to.sync_all()
}

fn resize_backing(path: &Path, size: u64) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(size)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn size_arguments() {
        assert_eq!(parse_size_arg("10G"), Some(10 << 30));
        assert_eq!(parse_size_arg("512M"), Some(512 << 20));
        assert_eq!(parse_size_arg("4k"), Some(4096));
        assert_eq!(parse_size_arg("1048576"), Some(1 << 20));
        assert_eq!(parse_size_arg("1.5G"), None);
        assert_eq!(parse_size_arg("G"), None);
        assert_eq!(parse_size_arg("10GiB"), None);
        assert_eq!(parse_size_arg("-1"), None);
        assert_eq!(parse_size_arg("99999999999T"), None);
    }

    #[test]
    fn copies_keep_content_and_holes() {
        use std::io::{Seek, SeekFrom, Write};
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("a.img"), dir.path().join("b.img"));
        let mut f = std::fs::File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        f.seek(SeekFrom::Start(40 << 20)).unwrap();
        f.write_all(b"marker").unwrap();
        drop(f);
        create_backing(&dst, Some(&src), 128 << 20).unwrap();
        let data = std::fs::read(&dst).unwrap();
        assert_eq!(data.len(), 128 << 20);
        assert_eq!(&data[40 << 20..(40 << 20) + 6], b"marker");
        assert!(data[..40 << 20].iter().all(|b| *b == 0));
        // Holes stayed holes: far less than the 64 MiB of zeros is allocated.
        let blocks = std::fs::metadata(&dst).unwrap().blocks() * 512;
        assert!(blocks < 8 << 20, "copy allocated {blocks} bytes");
    }

    #[test]
    fn file_types_are_words() {
        assert_eq!(file_type("storage-pool/a/x.img", Some(1)), ".img file");
        assert_eq!(file_type("storage-pool/a", None), "directory");
    }
}
