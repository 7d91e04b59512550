//! Sampling segmentations without replacement: Gumbel-top-k over all paths, done exactly by
//! stochastic beam search (Kool, van Hoof & Welling, 2019) over the prefix tree of
//! segmentations.
//!
//! A partial path ending at position `s` with score `σ` carries the log-mass of all its
//! completions, `φ = α·σ + log B(s) − log Z`, so children's perturbed maxima can be drawn
//! top-down: each child gets a Gumbel with location `φ_child`, shifted so that the largest
//! equals the parent's value. Keeping the `k + 1` largest nodes per step returns exactly the
//! `k + 1` largest perturbed paths; the `(k+1)`-th value `κ` gives each sample's inclusion
//! probability `1 − exp(−exp(log p − κ))` (the threshold used by the unordered-set estimator).

use super::graph::Lattice;
use super::model::{Model, Weights};
use super::nbest::MAX_PARTIAL_PATHS;
use crate::error::{Error, Result};
use crate::rng::Stream;

/// A sample: path edges, `log p_α(path)` and its inclusion probability.
pub type Drawn = (Vec<(usize, usize, u32)>, f64, f64);

#[derive(Clone, Copy, Debug)]
struct Node {
    pos: u32,
    /// α·score of the partial path.
    lw: f64,
    /// Perturbed log-mass of the subtree.
    g: f64,
    /// Arena index of (parent node, edge) links.
    link: u32,
}

/// `ln(1 − exp(a))` for `a <= 0`.
fn log1mexp(a: f64) -> f64 {
    if a > -std::f64::consts::LN_2 {
        (-a.exp_m1()).ln()
    } else {
        (-a.exp()).ln_1p()
    }
}

/// A Gumbel `g` conditioned on its siblings' maximum `z` being `t` (stable form).
fn truncate(t: f64, z: f64, g: f64) -> f64 {
    let v = t - g + log1mexp(g - z);
    t - v.max(0.0) - (-v.abs()).exp().ln_1p()
}

pub fn sample_without_replacement(
    model: &Model,
    text: &[u8],
    lat: &Lattice,
    w: &Weights,
    k: usize,
    rng: &mut Stream,
) -> Result<Vec<Drawn>> {
    if k > super::nbest::MAX_K {
        return Err(Error::Limit(format!(
            "n={k} exceeds the limit of {}",
            super::nbest::MAX_K
        )));
    }
    if k == 0 {
        return Ok(Vec::new());
    }
    let log_b = lat.backward(w);
    let n = lat.n;
    if n > 0 && log_b[0] == f64::NEG_INFINITY {
        let log_z = lat.forward(w);
        lat.check_reachable(model, text, &log_z)?;
    }
    let lz = log_b[0];
    let width = k + 1;
    // (parent link, edge index) pairs; u32::MAX marks the root.
    let mut links: Vec<(u32, u32)> = Vec::new();
    let mut beam = vec![Node {
        pos: 0,
        lw: 0.0,
        g: rng.gumbel(),
        link: u32::MAX,
    }];
    let mut next: Vec<Node> = Vec::new();
    let mut kids: Vec<(f64, f64, u32)> = Vec::new();
    while beam.iter().any(|b| (b.pos as usize) < n) {
        next.clear();
        for b in &beam {
            if b.pos as usize == n {
                next.push(*b);
                continue;
            }
            kids.clear();
            let mut zmax = f64::NEG_INFINITY;
            for idx in lat.out_range(b.pos as usize) {
                let ed = &lat.edges[idx];
                let lb = log_b[ed.e as usize];
                if lb == f64::NEG_INFINITY {
                    continue;
                }
                let lw = b.lw + w.log_w[ed.id as usize];
                let g = lw + lb - lz + rng.gumbel();
                zmax = zmax.max(g);
                kids.push((lw, g, idx as u32));
            }
            for &(lw, g, idx) in &kids {
                links.push((b.link, idx));
                next.push(Node {
                    pos: lat.edges[idx as usize].e,
                    lw,
                    g: truncate(b.g, zmax, g),
                    link: (links.len() - 1) as u32,
                });
            }
        }
        if next.len() > width {
            next.select_nth_unstable_by(width - 1, |a, b| b.g.total_cmp(&a.g));
            next.truncate(width);
        }
        std::mem::swap(&mut beam, &mut next);
        // Every expanded node keeps a link (8 bytes) until the end: bounded like the k-best
        // arena, so that a long text with a large n is refused after ~2 s instead of running
        // for minutes into tens of GiB (a 400-character text with n = 2²⁰: 196 s, 10.8 GB).
        if links.len() > MAX_PARTIAL_PATHS {
            return Err(Error::Limit(format!(
                "sampling without replacement needs more than {MAX_PARTIAL_PATHS} partial paths \
                 (about text length × n × pieces per position); use a smaller n or a shorter text"
            )));
        }
    }
    beam.sort_by(|a, b| b.g.total_cmp(&a.g));
    let kappa = if beam.len() > k {
        beam[k].g
    } else {
        f64::NEG_INFINITY
    };
    let mut out = Vec::with_capacity(k.min(beam.len()));
    for b in beam.iter().take(k) {
        let mut path = Vec::new();
        let mut l = b.link;
        while l != u32::MAX {
            let (parent, idx) = links[l as usize];
            let ed = lat.edges[idx as usize];
            path.push((ed.s as usize, ed.e as usize, ed.id));
            l = parent;
        }
        path.reverse();
        let log_p = b.lw - lz;
        let incl = if kappa == f64::NEG_INFINITY {
            1.0
        } else {
            -(-(log_p - kappa).exp()).exp_m1()
        };
        out.push((path, log_p, incl));
    }
    Ok(out)
}
