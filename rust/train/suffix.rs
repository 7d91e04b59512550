//! Suffix array, LCP array and the bottom-up enumeration of LCP intervals (the internal nodes
//! of the suffix tree), which is how the trainer finds every repeated substring of the corpus
//! in O(n log n) time without materialising any of them.

/// Suffix array of `s` over the alphabet `0..alphabet` by prefix doubling with two counting
/// sorts per round. O(n log n) in the worst case and usually far fewer rounds: doubling stops
/// as soon as all ranks are distinct, i.e. after log2 of the longest repeat.
pub fn suffix_array(s: &[u32], alphabet: usize) -> Vec<u32> {
    let n = s.len();
    if n == 0 {
        return Vec::new();
    }
    debug_assert!(s.iter().all(|&c| (c as usize) < alphabet));
    let mut sa: Vec<u32> = Vec::with_capacity(n);
    let mut rank: Vec<u32> = s.to_vec();
    let mut tmp: Vec<u32> = vec![0; n];
    let mut buckets: Vec<u32> = vec![0; alphabet.max(n) + 1];
    // Initial order: counting sort by the first symbol.
    for &c in s {
        buckets[c as usize + 1] += 1;
    }
    for i in 1..buckets.len() {
        buckets[i] += buckets[i - 1];
    }
    sa.resize(n, 0);
    for (i, &c) in s.iter().enumerate() {
        let b = &mut buckets[c as usize];
        sa[*b as usize] = i as u32;
        *b += 1;
    }
    let mut classes = alphabet;
    let mut k = 1usize;
    let mut second: Vec<u32> = vec![0; n];
    loop {
        // Order by the second key (rank[i + k], absent = smallest): suffixes too short to
        // have one come first, then the others in the current order of i + k.
        let mut p = 0;
        for i in (n.saturating_sub(k))..n {
            second[p] = i as u32;
            p += 1;
        }
        for &j in &sa {
            if j as usize >= k {
                second[p] = j - k as u32;
                p += 1;
            }
        }
        // Stable counting sort of that order by the first key.
        buckets[..=classes].iter_mut().for_each(|b| *b = 0);
        for &r in &rank {
            buckets[r as usize + 1] += 1;
        }
        for i in 1..=classes {
            buckets[i] += buckets[i - 1];
        }
        for &i in &second {
            let b = &mut buckets[rank[i as usize] as usize];
            sa[*b as usize] = i;
            *b += 1;
        }
        // Re-rank by the pair.
        let key = |i: usize| -> (u32, i64) {
            let r2 = if i + k < n { rank[i + k] as i64 } else { -1 };
            (rank[i], r2)
        };
        tmp[sa[0] as usize] = 0;
        let mut c = 0u32;
        for w in 1..n {
            if key(sa[w] as usize) != key(sa[w - 1] as usize) {
                c += 1;
            }
            tmp[sa[w] as usize] = c;
        }
        std::mem::swap(&mut rank, &mut tmp);
        classes = c as usize + 1;
        if classes == n {
            break;
        }
        k *= 2;
    }
    sa
}

/// Kasai's algorithm: `lcp[i]` = length of the common prefix of suffixes `sa[i-1]` and `sa[i]`
/// (`lcp[0] = 0`).
pub fn lcp_array(s: &[u32], sa: &[u32]) -> Vec<u32> {
    let n = s.len();
    let mut rank = vec![0u32; n];
    for (i, &p) in sa.iter().enumerate() {
        rank[p as usize] = i as u32;
    }
    let mut lcp = vec![0u32; n];
    let mut h = 0usize;
    for i in 0..n {
        let r = rank[i] as usize;
        if r == 0 {
            h = 0;
            continue;
        }
        let j = sa[r - 1] as usize;
        while i + h < n && j + h < n && s[i + h] == s[j + h] {
            h += 1;
        }
        lcp[r] = h as u32;
        h = h.saturating_sub(1);
    }
    lcp
}

/// One internal node of the suffix tree: the substring `s[sa[lb]..sa[lb] + len]` occurs
/// exactly at the suffixes `sa[lb..=rb]`; its parent node has length `parent_len`, so every
/// prefix longer than `parent_len` has exactly these occurrences too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub len: u32,
    pub lb: u32,
    pub rb: u32,
    pub parent_len: u32,
}

/// Calls `f` for every LCP interval of positive length (each repeated, right-branching
/// substring once), children before parents.
pub fn for_each_interval(lcp: &[u32], mut f: impl FnMut(Interval)) {
    let n = lcp.len();
    let mut stack: Vec<(u32, u32)> = vec![(0, 0)];
    for i in 1..=n {
        let cur = if i < n { lcp[i] } else { 0 };
        let mut lb = (i - 1) as u32;
        while let Some(&(h, l)) = stack.last() {
            if cur >= h {
                break;
            }
            stack.pop();
            lb = l;
            let top = stack.last().map_or(0, |t| t.0);
            f(Interval {
                len: h,
                lb: l,
                rb: (i - 1) as u32,
                parent_len: cur.max(top),
            });
        }
        if cur > stack.last().map_or(0, |t| t.0) {
            stack.push((cur, lb));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn brute_sa(s: &[u32]) -> Vec<u32> {
        let mut v: Vec<u32> = (0..s.len() as u32).collect();
        v.sort_by(|&a, &b| s[a as usize..].cmp(&s[b as usize..]));
        v
    }

    /// Every substring occurring at least twice and followed by two different symbols (or by
    /// the end of the text and something else), with its occurrence count: the internal nodes.
    fn brute_nodes(s: &[u32]) -> BTreeMap<Vec<u32>, usize> {
        let n = s.len();
        let mut occ: BTreeMap<Vec<u32>, Vec<usize>> = BTreeMap::new();
        for i in 0..n {
            for j in i + 1..=n {
                occ.entry(s[i..j].to_vec()).or_default().push(i);
            }
        }
        occ.into_iter()
            .filter(|(sub, at)| {
                let nexts: std::collections::BTreeSet<Option<u32>> =
                    at.iter().map(|&i| s.get(i + sub.len()).copied()).collect();
                at.len() >= 2 && nexts.len() >= 2
            })
            .map(|(sub, at)| (sub, at.len()))
            .collect()
    }

    proptest! {
        #[test]
        fn suffix_array_matches_brute_force(s in prop::collection::vec(0u32..4, 0..200)) {
            let sa = suffix_array(&s, 4);
            prop_assert_eq!(&sa, &brute_sa(&s));
            let lcp = lcp_array(&s, &sa);
            for i in 1..s.len() {
                let (a, b) = (&s[sa[i - 1] as usize..], &s[sa[i] as usize..]);
                let h = a.iter().zip(b).take_while(|(x, y)| x == y).count();
                prop_assert_eq!(lcp[i] as usize, h);
            }
        }

        #[test]
        fn intervals_are_the_repeated_branching_substrings(
            s in prop::collection::vec(0u32..3, 0..60)
        ) {
            let sa = suffix_array(&s, 3);
            let lcp = lcp_array(&s, &sa);
            let mut got: BTreeMap<Vec<u32>, usize> = BTreeMap::new();
            for_each_interval(&lcp, |iv| {
                let p = sa[iv.lb as usize] as usize;
                let sub = s[p..p + iv.len as usize].to_vec();
                // All suffixes in the interval share the substring; the parent is shorter.
                for k in iv.lb..=iv.rb {
                    let q = sa[k as usize] as usize;
                    assert_eq!(&s[q..q + iv.len as usize], &sub[..]);
                }
                assert!(iv.parent_len < iv.len);
                assert!(got.insert(sub, (iv.rb - iv.lb + 1) as usize).is_none());
            });
            prop_assert_eq!(got, brute_nodes(&s));
        }
    }
}
