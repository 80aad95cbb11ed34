//! The `/dev/nvme-fabrics` control file.
//!
//! Connecting is one `write` of the option string followed by a `read` on the *same* descriptor,
//! which returns `instance=N,cntlid=M` for the controller just created. The device sits behind a
//! trait so tests can substitute a file they control, and so errno answers that only a real
//! kernel produces (EALREADY, EINVAL) can be scripted.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{NvmeError, Result};

/// errno the kernel returns when an identical controller already exists.
pub const EALREADY: i32 = 114;

/// Something that accepts a fabrics option string and answers like the kernel.
///
/// `submit` is blocking; the initiator always calls it on the blocking pool under a deadline.
pub trait FabricsDevice: Send + Sync + 'static {
    /// Path shown in errors and logs.
    fn path(&self) -> &Path;
    /// Writes `options`, returns the kernel's answer text.
    fn submit(&self, options: &str) -> Result<String>;
}

/// The real control file (or, in tests, any file standing in for it).
#[derive(Debug, Clone)]
pub struct FabricsFile {
    path: PathBuf,
}

impl FabricsFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FabricsFile { path: path.into() }
    }
}

impl FabricsDevice for FabricsFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn submit(&self, options: &str) -> Result<String> {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|source| {
                if source.kind() == ErrorKind::NotFound {
                    // Not "not connected": the interface itself is missing.
                    NvmeError::Io {
                        op: "open fabrics control file (is nvme-tcp loaded?)",
                        path: self.path.clone(),
                        source,
                    }
                } else {
                    NvmeError::from_kernel_io("open", self.path.clone(), source)
                }
            })?;
        // The kernel parses exactly one write; a short write would be a malformed request.
        let n = f
            .write(options.as_bytes())
            .map_err(|e| NvmeError::from_kernel_io("connect", self.path.clone(), e))?;
        if n != options.len() {
            return Err(NvmeError::UnexpectedAnswer {
                path: self.path.clone(),
                answer: format!("short write: {n} of {} bytes", options.len()),
            });
        }
        // One read, like libnvme: the answer is a single short line and waiting for EOF would
        // hang on anything that is not the real seq_file.
        let mut buf = [0u8; 4096];
        let n = f
            .read(&mut buf)
            .map_err(|e| NvmeError::from_kernel_io("read connect answer", self.path.clone(), e))?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

/// What the kernel reports for a new controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FabricsAnswer {
    pub instance: u32,
    pub cntlid: u32,
}

impl FabricsAnswer {
    /// Name of the controller under `class/nvme` at the moment of creation.
    pub fn controller(&self) -> String {
        format!("nvme{}", self.instance)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let bad = || NvmeError::UnexpectedAnswer {
            path: path.to_path_buf(),
            answer: text.to_string(),
        };
        let mut instance = None;
        let mut cntlid = None;
        for part in text.trim().split(',') {
            match part.split_once('=') {
                Some(("instance", v)) => instance = Some(v.parse().map_err(|_| bad())?),
                Some(("cntlid", v)) => cntlid = Some(v.parse().map_err(|_| bad())?),
                _ => return Err(bad()),
            }
        }
        match (instance, cntlid) {
            (Some(instance), Some(cntlid)) => Ok(FabricsAnswer { instance, cntlid }),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answer() {
        let p = Path::new("/dev/nvme-fabrics");
        let a = FabricsAnswer::parse(p, "instance=3,cntlid=1\n").unwrap();
        assert_eq!(
            a,
            FabricsAnswer {
                instance: 3,
                cntlid: 1
            }
        );
        assert_eq!(a.controller(), "nvme3");
        for bad in [
            "",
            "instance=3",
            "instance=x,cntlid=1",
            "transport=tcp,traddr=1",
            "instance=1,cntlid=2,x=3",
        ] {
            assert!(FabricsAnswer::parse(p, bad).is_err(), "{bad:?}");
        }
    }
}
