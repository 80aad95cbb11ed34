//! Paging of the CSI list RPCs (ListVolumes, ListSnapshots): one token format and one set of
//! rules for both.
//!
//! A token is `after:<id>`, the last id of the previous page, not an offset: a page boundary
//! then stays right when entries before it are deleted between calls (csi-sanity checks this).
//! A token this driver did not issue is ABORTED, as the CSI spec asks.
//!
//! RouterOS has no server-side paging, so a walk that re-read the whole listing for every page
//! would cost O(total × pages). [`Snapshots`] keeps the listing a walk started from, for a
//! bounded time and in bounded memory, and the token names it (`after:<id>@<snapshot>`): the
//! pages of one walk then come from one listing (no duplicates, no survivor skipped however
//! volumes come and go meanwhile). A token whose snapshot is gone (expired, evicted, another
//! controller replica) still works: the listing is read again and the walk resumes after `<id>`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vocab::error::{DriverError, Result};

const TOKEN_PREFIX: &str = "after:";
/// Separates the resume id from the snapshot key; ids never contain it (slots are
/// alphanumeric and `-`, backends lowercase, digits and `-`).
const SNAPSHOT_SEPARATOR: char = '@';

/// The id the requested page starts after, or `None` for the first page.
pub fn start_after(max_entries: i32, starting_token: &str) -> Result<Option<&str>> {
    if max_entries < 0 {
        return Err(DriverError::InvalidArgument(format!(
            "max_entries must not be negative; got {max_entries}"
        )));
    }
    if starting_token.is_empty() {
        return Ok(None);
    }
    starting_token
        .strip_prefix(TOKEN_PREFIX)
        .map(Some)
        .ok_or_else(|| {
            DriverError::Aborted(format!(
                "starting_token {starting_token:?} was not issued by this driver"
            ))
        })
}

/// A parsed `starting_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    /// The id the requested page starts after.
    pub after: &'a str,
    /// The listing snapshot the walk reads from, when the token named one.
    pub snapshot: Option<&'a str>,
}

/// Like [`start_after`], but also reads the snapshot key of a token [`Snapshots`] issued.
pub fn parse_token(max_entries: i32, starting_token: &str) -> Result<Option<Token<'_>>> {
    let Some(rest) = start_after(max_entries, starting_token)? else {
        return Ok(None);
    };
    Ok(Some(match rest.rsplit_once(SNAPSHOT_SEPARATOR) {
        Some((after, key)) if is_snapshot_key(key) => Token {
            after,
            snapshot: Some(key),
        },
        Some(_) => {
            return Err(invalid_token(
                starting_token,
                "its snapshot key is malformed",
            ));
        }
        None => Token {
            after: rest,
            snapshot: None,
        },
    }))
}

fn is_snapshot_key(key: &str) -> bool {
    key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A token whose id no longer parses (a different driver version, a hand-made token).
pub fn invalid_token(starting_token: &str, why: impl std::fmt::Display) -> DriverError {
    DriverError::Aborted(format!(
        "starting_token {starting_token:?} is not valid: {why}"
    ))
}

/// One page of `sorted` (ascending by `key`): the entries after `after`, at most `max_entries`
/// of them (0 means all), and the token for the next page (empty on the last page).
pub fn page<'a, T>(
    sorted: &'a [T],
    key: impl Fn(&T) -> String,
    after: Option<&str>,
    max_entries: i32,
) -> (&'a [T], String) {
    let start = after.map_or(0, |a| sorted.partition_point(|e| key(e).as_str() <= a));
    let limit = match usize::try_from(max_entries) {
        Ok(0) | Err(_) => usize::MAX,
        Ok(n) => n,
    };
    let end = start.saturating_add(limit).min(sorted.len());
    let page = &sorted[start..end];
    let next = match page.last() {
        Some(last) if end < sorted.len() => format!("{TOKEN_PREFIX}{}", key(last)),
        _ => String::new(),
    };
    (page, next)
}

/// Bounds of a [`Snapshots`] cache.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotLimits {
    /// Walks served from a snapshot at once; the least recently used is dropped beyond it.
    pub max_snapshots: usize,
    /// Entries held across all snapshots; a listing larger than this is never kept (its walk
    /// re-reads the listing per page, as without a cache).
    pub max_entries: usize,
    /// A snapshot not read for this long is dropped (a CO that abandoned its walk).
    pub idle: Duration,
}

impl Default for SnapshotLimits {
    fn default() -> Self {
        // 8 walks of 25,000 volumes each, or fewer larger ones; a CO pages at least every few
        // seconds, so a minute idle means the walk was abandoned.
        SnapshotLimits {
            max_snapshots: 8,
            max_entries: 200_000,
            idle: Duration::from_secs(60),
        }
    }
}

struct Kept<T> {
    items: Arc<Vec<T>>,
    last_used: Instant,
}

/// Listings kept for paged walks, keyed by the snapshot key tokens carry.
pub struct Snapshots<T> {
    limits: SnapshotLimits,
    kept: Mutex<HashMap<String, Kept<T>>>,
}

impl<T> Default for Snapshots<T> {
    fn default() -> Self {
        Self::new(SnapshotLimits::default())
    }
}

impl<T> Snapshots<T> {
    pub fn new(limits: SnapshotLimits) -> Self {
        Snapshots {
            limits,
            kept: Mutex::new(HashMap::new()),
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept<T>>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The listing kept under `key`, if it is still there; reading it keeps it alive.
    pub fn get(&self, key: &str) -> Option<Arc<Vec<T>>> {
        let now = Instant::now();
        let mut kept = self.kept();
        self.expire(&mut kept, now);
        let k = kept.get_mut(key)?;
        k.last_used = now;
        Some(Arc::clone(&k.items))
    }

    /// Keeps `items` for the rest of a walk; `None` when it is larger than the whole budget.
    pub fn insert(&self, items: Arc<Vec<T>>) -> Option<String> {
        if items.len() > self.limits.max_entries || self.limits.max_snapshots == 0 {
            return None;
        }
        let now = Instant::now();
        let mut kept = self.kept();
        self.expire(&mut kept, now);
        loop {
            let held: usize = kept.values().map(|k| k.items.len()).sum();
            let full = kept.len() >= self.limits.max_snapshots
                || held + items.len() > self.limits.max_entries;
            if !full {
                break;
            }
            let oldest = kept
                .iter()
                .min_by_key(|(_, k)| k.last_used)
                .map(|(key, _)| key.clone())?;
            kept.remove(&oldest);
        }
        let key = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        kept.insert(
            key.clone(),
            Kept {
                items,
                last_used: now,
            },
        );
        Some(key)
    }

    /// Drops the snapshot of a walk that reached its last page.
    pub fn remove(&self, key: &str) {
        self.kept().remove(key);
    }

    /// Snapshots held now (after dropping expired ones).
    pub fn len(&self) -> usize {
        let mut kept = self.kept();
        self.expire(&mut kept, Instant::now());
        kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expire(&self, kept: &mut HashMap<String, Kept<T>>, now: Instant) {
        kept.retain(|_, k| now.duration_since(k.last_used) < self.limits.idle);
    }
}

/// One page of a walk served from `snapshots`: the first page (no token) and a page whose
/// snapshot is gone read the listing through `fetch` (sorted ascending by `key`); every other
/// page is cut from the kept snapshot without reading anything. Returns the page and the next
/// token.
pub async fn walk<T, F, Fut>(
    snapshots: &Snapshots<T>,
    token: Option<Token<'_>>,
    max_entries: i32,
    key: impl Fn(&T) -> String,
    fetch: F,
) -> Result<(Vec<T>, String)>
where
    T: Clone,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>>>,
{
    walk_where(snapshots, token, max_entries, key, |_| true, fetch).await
}

/// [`walk`] over the entries `keep` accepts. The whole listing is kept and the filter applied
/// to each page, so a walk's later pages need no read of their own whatever the filter.
pub async fn walk_where<T, F, Fut>(
    snapshots: &Snapshots<T>,
    token: Option<Token<'_>>,
    max_entries: i32,
    key: impl Fn(&T) -> String,
    keep: impl Fn(&T) -> bool,
    fetch: F,
) -> Result<(Vec<T>, String)>
where
    T: Clone,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>>>,
{
    let kept = token
        .and_then(|t| t.snapshot)
        .and_then(|k| snapshots.get(k).map(|items| (k.to_string(), items)));
    let (snapshot, items) = match kept {
        Some((k, items)) => (Some(k), items),
        None => (None, Arc::new(fetch().await?)),
    };
    let after = token.map(|t| t.after);
    let kept_items: Vec<&T> = items.iter().filter(|e| keep(e)).collect();
    let (page, next) = page(&kept_items, |e| key(e), after, max_entries);
    let page: Vec<T> = page.iter().map(|e| (*e).clone()).collect();
    drop(kept_items);
    if next.is_empty() {
        if let Some(k) = &snapshot {
            snapshots.remove(k);
        }
        return Ok((page, next));
    }
    let snapshot = snapshot.or_else(|| snapshots.insert(items));
    let next = match snapshot {
        Some(k) => format!("{next}{SNAPSHOT_SEPARATOR}{k}"),
        None => next,
    };
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("pvc-{i:03}")).collect()
    }

    #[test]
    fn pages_walk_every_entry_once() {
        let all = ids(7);
        let (mut seen, mut token) = (Vec::new(), String::new());
        loop {
            let after = start_after(3, &token).unwrap();
            let (page, next) = page(&all, |s| s.clone(), after, 3);
            seen.extend(page.iter().cloned());
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, all);
    }

    #[test]
    fn a_deleted_boundary_entry_does_not_skip_the_next_one() {
        let all = ids(5);
        let (_, token) = page(&all, |s| s.clone(), None, 2);
        let shrunk: Vec<String> = all.iter().filter(|s| *s != "pvc-001").cloned().collect();
        let (rest, _) = page(&shrunk, |s| s.clone(), start_after(2, &token).unwrap(), 2);
        assert_eq!(rest, &["pvc-002".to_string(), "pvc-003".to_string()]);
    }

    #[test]
    fn zero_means_all_and_the_last_page_has_no_token() {
        let all = ids(4);
        let (p, next) = page(&all, |s| s.clone(), None, 0);
        assert_eq!((p.len(), next.as_str()), (4, ""));
        let (p, next) = page(&all, |s| s.clone(), None, 4);
        assert_eq!((p.len(), next.as_str()), (4, ""));
    }

    #[test]
    fn bad_requests_are_refused_with_the_codes_csi_names() {
        assert!(matches!(
            start_after(-1, ""),
            Err(DriverError::InvalidArgument(_))
        ));
        assert!(matches!(
            start_after(1, "garbage"),
            Err(DriverError::Aborted(_))
        ));
        assert_eq!(start_after(1, "after:x").unwrap(), Some("x"));
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("pvc-{i:03}")).collect()
    }

    /// A listing that changes under the walk, counting how often it was read.
    struct Rds {
        now: Mutex<Vec<String>>,
        reads: AtomicUsize,
    }

    impl Rds {
        fn new(items: Vec<String>) -> Self {
            Rds {
                now: Mutex::new(items),
                reads: AtomicUsize::new(0),
            }
        }
        async fn list(&self) -> Result<Vec<String>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let mut v = self.now.lock().unwrap().clone();
            v.sort();
            Ok(v)
        }
    }

    async fn next_page(
        s: &Snapshots<String>,
        rds: &Rds,
        token: &str,
        max: i32,
    ) -> (Vec<String>, String) {
        let t = parse_token(max, token).unwrap();
        walk(s, t, max, |x: &String| x.clone(), || rds.list())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_walk_reads_the_listing_once_and_sees_it_as_it_was_when_it_started() {
        let s = Snapshots::default();
        let rds = Rds::new(ids(0..10));
        let (mut seen, mut token) = (Vec::new(), String::new());
        let mut pages = 0;
        loop {
            let (p, next) = next_page(&s, &rds, &token, 3).await;
            seen.extend(p);
            pages += 1;
            if pages == 1 {
                // Deleted before and after the boundary, and created in between, mid-walk.
                let mut now = rds.now.lock().unwrap();
                now.retain(|x| x != "pvc-001" && x != "pvc-005");
                now.push("pvc-004a".into());
            }
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, ids(0..10), "no duplicates, no survivor skipped");
        assert_eq!(rds.reads.load(Ordering::SeqCst), 1, "one listing per walk");
        assert!(s.is_empty(), "the last page drops the snapshot");
    }

    #[tokio::test]
    async fn a_token_whose_snapshot_is_gone_resumes_after_its_id_from_a_fresh_listing() {
        let s = Snapshots::default();
        let rds = Rds::new(ids(0..6));
        let (first, token) = next_page(&s, &rds, "", 2).await;
        assert_eq!(first, ids(0..2));
        let key = parse_token(2, &token).unwrap().unwrap().snapshot.unwrap();
        s.remove(key);
        rds.now.lock().unwrap().retain(|x| x != "pvc-001");
        let (second, next) = next_page(&s, &rds, &token, 2).await;
        assert_eq!(second, ids(2..4));
        assert_eq!(rds.reads.load(Ordering::SeqCst), 2);
        let (third, last) = next_page(&s, &rds, &next, 2).await;
        assert_eq!((third, last.as_str()), (ids(4..6), ""));
        assert_eq!(
            rds.reads.load(Ordering::SeqCst),
            2,
            "the new snapshot served"
        );
        // A plain `after:` token (no snapshot) is still accepted.
        let (p, _) = next_page(&s, &rds, "after:pvc-003", 0).await;
        assert_eq!(p, ids(4..6));
    }

    #[tokio::test]
    async fn a_filtered_walk_pages_the_matching_entries_from_one_listing() {
        let s = Snapshots::default();
        let rds = Rds::new(ids(0..10));
        let even = |x: &String| x.ends_with(['0', '2', '4', '6', '8']);
        let (mut seen, mut token) = (Vec::new(), String::new());
        loop {
            let t = parse_token(2, &token).unwrap();
            let (p, next) = walk_where(&s, t, 2, |x: &String| x.clone(), even, || rds.list())
                .await
                .unwrap();
            assert!(p.len() <= 2);
            seen.extend(p);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        let want: Vec<String> = ids(0..10).into_iter().filter(|x| even(x)).collect();
        assert_eq!(seen, want);
        assert_eq!(rds.reads.load(Ordering::SeqCst), 1, "one listing per walk");
        assert!(s.is_empty());
    }

    #[test]
    fn snapshots_are_bounded_in_count_entries_and_age() {
        let s = Snapshots::new(SnapshotLimits {
            max_snapshots: 2,
            max_entries: 10,
            idle: Duration::from_secs(60),
        });
        let a = s.insert(Arc::new(ids(0..4))).unwrap();
        let b = s.insert(Arc::new(ids(0..4))).unwrap();
        assert!(s.get(&a).is_some(), "a is now the most recently used");
        let c = s.insert(Arc::new(ids(0..4))).unwrap();
        assert!(s.get(&b).is_none(), "the least recently used gave way");
        assert!(s.get(&a).is_some() && s.get(&c).is_some());
        // 4 + 4 held; 5 more would pass 10 entries: the least recently used (a) gives way.
        let d = s.insert(Arc::new(ids(0..5))).unwrap();
        assert!(s.get(&a).is_none());
        assert!(s.get(&c).is_some() && s.get(&d).is_some());
        assert_eq!(
            s.insert(Arc::new(ids(0..11))),
            None,
            "larger than the budget"
        );

        let brief = Snapshots::new(SnapshotLimits {
            idle: Duration::ZERO,
            ..SnapshotLimits::default()
        });
        let k = brief.insert(Arc::new(ids(0..3))).unwrap();
        assert!(brief.get(&k).is_none(), "expired");
        assert!(brief.is_empty());
    }

    #[test]
    fn tokens_carry_the_snapshot_key_and_a_mangled_one_is_aborted() {
        let t = parse_token(5, "after:default:pvc-1@0123456789abcdef")
            .unwrap()
            .unwrap();
        assert_eq!(t.after, "default:pvc-1");
        assert_eq!(t.snapshot, Some("0123456789abcdef"));
        assert!(matches!(
            parse_token(5, "after:default:pvc-1@zz"),
            Err(DriverError::Aborted(_))
        ));
        assert_eq!(
            parse_token(5, "after:default:pvc-1")
                .unwrap()
                .unwrap()
                .snapshot,
            None
        );
    }
}
