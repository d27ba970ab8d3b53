//! The set of source addresses allowed to reach the callback: single IPv4/IPv6
//! addresses and CIDR blocks, compiled into sorted, merged ranges so a lookup is a
//! binary search whatever the list's size.
//!
//! IPv4-mapped IPv6 sources (`::ffff:a.b.c.d`, what a dual-stack listener reports)
//! are looked up as the IPv4 address they carry.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An entry that is neither an IP address nor a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEntry {
    pub entry: String,
    pub why: &'static str,
}

impl fmt::Display for BadEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an IP address or CIDR block: {}",
            self.entry, self.why
        )
    }
}

/// One parsed entry: an address range, inclusive at both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    V4(u32, u32),
    V6(u128, u128),
}

/// Parses `1.2.3.4`, `1.2.3.0/24`, `2001:db8::1` or `2001:db8::/32`. Host bits set
/// below the prefix (`10.1.2.3/8`) are cleared, as WeChat's own list sometimes has them.
pub fn parse_block(entry: &str) -> Result<Block, BadEntry> {
    let bad = |why| BadEntry {
        entry: entry.to_string(),
        why,
    };
    let text = entry.trim();
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => {
            let digits_only = !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit());
            let prefix: u8 = match prefix.parse() {
                Ok(p) if digits_only => p,
                _ => return Err(bad("the prefix length is not a number")),
            };
            (addr, Some(prefix))
        }
        None => (text, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
    match ip {
        IpAddr::V4(v4) => {
            let prefix = prefix.unwrap_or(32);
            if prefix > 32 {
                return Err(bad("an IPv4 prefix is at most 32"));
            }
            let host_bits = 32 - u32::from(prefix);
            let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
            let start = u32::from(v4) & mask;
            Ok(Block::V4(start, start | !mask))
        }
        IpAddr::V6(v6) => {
            let prefix = prefix.unwrap_or(128);
            if prefix > 128 {
                return Err(bad("an IPv6 prefix is at most 128"));
            }
            let host_bits = 128 - u32::from(prefix);
            let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
            let start = u128::from(v6) & mask;
            Ok(Block::V6(start, start | !mask))
        }
    }
}

/// A compiled allowlist. Cheap to query; build it once per list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackAllowlist {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    entries: usize,
}

impl CallbackAllowlist {
    /// Builds the list from already parsed blocks.
    pub fn from_blocks(blocks: impl IntoIterator<Item = Block>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut entries = 0;
        for block in blocks {
            entries += 1;
            match block {
                Block::V4(a, b) => v4.push((a, b)),
                Block::V6(a, b) => v6.push((a, b)),
            }
        }
        CallbackAllowlist {
            v4: merge(v4),
            v6: merge(v6),
            entries,
        }
    }

    /// Parses every entry; the first bad one is the error.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, BadEntry> {
        let blocks: Result<Vec<Block>, BadEntry> = entries.into_iter().map(parse_block).collect();
        Ok(Self::from_blocks(blocks?))
    }

    /// The union of two lists (static entries ∪ the live list).
    pub fn union(&self, other: &CallbackAllowlist) -> CallbackAllowlist {
        let mut v4 = self.v4.clone();
        v4.extend_from_slice(&other.v4);
        let mut v6 = self.v6.clone();
        v6.extend_from_slice(&other.v6);
        CallbackAllowlist {
            v4: merge(v4),
            v6: merge(v6),
            entries: self.entries + other.entries,
        }
    }

    /// How many entries the list was built from (before merging overlaps).
    pub fn entries(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.contains_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.contains_v4(v4),
                None => self.contains_v6(v6),
            },
        }
    }

    fn contains_v4(&self, ip: Ipv4Addr) -> bool {
        in_ranges(&self.v4, u32::from(ip))
    }

    fn contains_v6(&self, ip: Ipv6Addr) -> bool {
        in_ranges(&self.v6, u128::from(ip))
    }
}

/// Sorts ranges and merges the ones that overlap or touch. Sorted by a heap: done
/// when a list is installed, never per request, and a fraction of the code size of
/// the slice sorts (each instantiation of which is kilobytes of the `.wasm`).
fn merge<T: Copy + Ord + num::Successor>(ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    let ranges = std::collections::BinaryHeap::from(ranges).into_sorted_vec();
    let mut merged: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        if let Some(last) = merged.last_mut() {
            if last.1.successor().is_none_or(|next| start <= next) {
                if end > last.1 {
                    last.1 = end;
                }
                continue;
            }
        }
        merged.push((start, end));
    }
    merged
}

fn in_ranges<T: Copy + Ord>(ranges: &[(T, T)], ip: T) -> bool {
    // The last range starting at or before `ip` is the only one that can hold it.
    let after = ranges.partition_point(|&(start, _)| start <= ip);
    match after.checked_sub(1).and_then(|i| ranges.get(i)) {
        Some(&(_, end)) => ip <= end,
        None => false,
    }
}

mod num {
    pub trait Successor: Sized {
        fn successor(self) -> Option<Self>;
    }
    impl Successor for u32 {
        fn successor(self) -> Option<Self> {
            self.checked_add(1)
        }
    }
    impl Successor for u128 {
        fn successor(self) -> Option<Self> {
            self.checked_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> CallbackAllowlist {
        CallbackAllowlist::parse(entries.iter().copied()).expect("valid entries")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn single_ipv4_address_matches_only_itself() {
        let l = list(&["127.0.0.2"]);
        assert!(l.contains(ip("127.0.0.2")));
        assert!(!l.contains(ip("127.0.0.1")));
        assert!(!l.contains(ip("127.0.0.3")));
    }

    #[test]
    fn ipv4_cidr_covers_its_block_and_nothing_more() {
        let l = list(&["10.0.0.0/8"]);
        assert!(l.contains(ip("10.0.0.0")));
        assert!(l.contains(ip("10.255.255.255")));
        assert!(!l.contains(ip("11.0.0.0")));
        assert!(!l.contains(ip("9.255.255.255")));
    }

    #[test]
    fn host_bits_below_the_prefix_are_cleared() {
        assert_eq!(parse_block("10.1.2.3/8"), parse_block("10.0.0.0/8"));
    }

    #[test]
    fn zero_prefix_covers_everything_of_that_family() {
        let l = list(&["0.0.0.0/0"]);
        assert!(l.contains(ip("255.255.255.255")));
        assert!(!l.contains(ip("::1")));
        let l6 = list(&["::/0"]);
        assert!(l6.contains(ip("2001:db8::1")));
    }

    #[test]
    fn ipv6_address_and_cidr() {
        let l = list(&["2001:db8::/32", "::1"]);
        assert!(l.contains(ip("2001:db8:ffff::1")));
        assert!(!l.contains(ip("2001:db9::1")));
        assert!(l.contains(ip("::1")));
        assert!(!l.contains(ip("::2")));
    }

    #[test]
    fn ipv4_mapped_ipv6_source_is_checked_as_ipv4() {
        let l = list(&["127.0.0.2"]);
        assert!(l.contains(ip("::ffff:127.0.0.2")));
        assert!(!l.contains(ip("::ffff:127.0.0.3")));
    }

    #[test]
    fn overlapping_and_adjacent_blocks_merge() {
        let l = list(&["10.0.0.0/24", "10.0.1.0/24", "10.0.0.128/25", "10.0.3.0/24"]);
        assert_eq!(l.v4.len(), 2);
        assert_eq!(l.entries(), 4);
        assert!(l.contains(ip("10.0.1.255")));
        assert!(!l.contains(ip("10.0.2.0")));
        assert!(l.contains(ip("10.0.3.7")));
    }

    #[test]
    fn top_of_the_address_space_does_not_overflow() {
        let l = list(&[
            "255.255.255.255",
            "255.255.255.0/24",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ]);
        assert!(l.contains(ip("255.255.255.255")));
        assert!(l.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
    }

    #[test]
    fn bad_entries_are_refused_with_a_reason() {
        for bad in [
            "",
            "localhost",
            "1.2.3",
            "1.2.3.4/33",
            "::/129",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "1.2.3.4/ab",
            "1.2.3.4/8/9",
        ] {
            let err = parse_block(bad).expect_err(bad);
            assert_eq!(err.entry, bad);
        }
    }

    #[test]
    fn union_holds_both_lists() {
        let a = list(&["127.0.0.2"]);
        let b = list(&["2001:db8::1", "127.0.0.3"]);
        let u = a.union(&b);
        assert!(
            u.contains(ip("127.0.0.2"))
                && u.contains(ip("127.0.0.3"))
                && u.contains(ip("2001:db8::1"))
        );
        assert_eq!(u.entries(), 3);
    }

    #[test]
    fn empty_list_contains_nothing() {
        let l = CallbackAllowlist::default();
        assert!(l.is_empty());
        assert!(!l.contains(ip("127.0.0.1")));
    }

    #[test]
    fn large_list_agrees_with_a_linear_scan() {
        let mut entries = Vec::new();
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let prefix = 16 + (x % 17);
            entries.push(format!("{}/{}", Ipv4Addr::from(x), prefix));
        }
        let blocks: Vec<Block> = entries
            .iter()
            .map(|e| parse_block(e).expect("valid"))
            .collect();
        let l = CallbackAllowlist::from_blocks(blocks.clone());
        for _ in 0..5000 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let probe = x;
            let linear = blocks
                .iter()
                .any(|b| matches!(*b, Block::V4(s, e) if s <= probe && probe <= e));
            assert_eq!(
                l.contains(IpAddr::V4(Ipv4Addr::from(probe))),
                linear,
                "{}",
                Ipv4Addr::from(probe)
            );
        }
    }
}
