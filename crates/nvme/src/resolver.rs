//! NQN → device resolution with a cache that is never trusted blindly.
//!
//! A cached `/dev/<name>` that merely still exists proves nothing: after a renumbering that name
//! can belong to another volume. So a cached answer is returned only
//! after re-reading, through the block device's own sysfs ancestry, that it still belongs to the
//! NQN with the same major:minor, and that its controllers still belong to the NQN. Any doubt
//! means a full rescan.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::error::Result;
use crate::nqn::Nqn;
use crate::sysfs::{Device, Sysfs};

/// Blocking resolver over a [`Sysfs`]; the initiator calls it on the blocking pool.
#[derive(Debug)]
pub struct Resolver {
    sysfs: Sysfs,
    cache: Mutex<HashMap<Nqn, Device>>,
}

impl Resolver {
    pub fn new(sysfs: Sysfs) -> Self {
        Resolver {
            sysfs,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn sysfs(&self) -> &Sysfs {
        &self.sysfs
    }

    /// Full scan; refreshes the cache.
    pub fn resolve(&self, nqn: &Nqn) -> Result<Option<Device>> {
        let found = self.sysfs.device(nqn.as_str())?;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        match &found {
            Some(d) => {
                cache.insert(nqn.clone(), d.clone());
            }
            None => {
                cache.remove(nqn);
            }
        }
        Ok(found)
    }

    /// Answer safe for destructive use (format, mount, stale comparison, disconnect decisions).
    pub fn resolve_verified(&self, nqn: &Nqn) -> Result<Option<Device>> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(nqn)
            .cloned();
        if let Some(dev) = cached {
            if let Some(fresh) = self.reverify(nqn, &dev)? {
                return Ok(Some(fresh));
            }
            tracing::debug!(nqn = %nqn, device = %dev.name, "cached device failed re-verification, rescanning");
        }
        self.resolve(nqn)
    }

    /// `Some(refreshed)` if the cached device provably still belongs to `nqn`.
    fn reverify(&self, nqn: &Nqn, dev: &Device) -> Result<Option<Device>> {
        match self.sysfs.owner_of_block(&dev.name)? {
            Some(owner) if owner.nqn == nqn.as_str() && owner.dev == dev.dev => {}
            _ => return Ok(None),
        }
        let mut controllers = Vec::with_capacity(dev.controllers.len());
        for c in &dev.controllers {
            match self.sysfs.controller(&c.name)? {
                Some(now) if now.subsysnqn == nqn.as_str() => controllers.push(now),
                // A controller vanished or was renumbered: the set may have changed.
                _ => return Ok(None),
            }
        }
        Ok(Some(Device {
            controllers,
            ..dev.clone()
        }))
    }

    pub fn invalidate(&self, nqn: &Nqn) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(nqn);
    }
}
