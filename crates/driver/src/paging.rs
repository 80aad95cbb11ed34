//! Paging of the CSI list RPCs (ListVolumes, ListSnapshots): one token format and one set of
//! rules for both.
//!
//! A token is `after:<id>`, the last id of the previous page, not an offset: a page boundary
//! then stays right when entries before it are deleted between calls (csi-sanity checks this).
//! A token this driver did not issue is ABORTED, as the CSI spec asks.

use crate::error::{DriverError, Result};

const TOKEN_PREFIX: &str = "after:";

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
