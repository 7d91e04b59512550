//! Encoding single texts and batches: text preparation, the chosen decoder, UNK merging, and
//! the parallel batch loop with per-item random streams.
//!
//! Item `i` of a batch seeded with `seed` draws from `Stream::new(seed, stream_offset + i)`, so
//! output never depends on the thread count or on how rayon splits the work, and a batch cut
//! into pieces reproduces the whole when each piece passes its offset.
//!
//! # Performance notes (batch Viterbi / sampling / n-best, measured with `perf` and
//! `benches/compare.py` on a shared, loaded 2-core machine; always side by side)
//!
//! Profile of `encode_batch_flat` before this round (botchan, 1k model): Viterbi forward pass
//! 40 %, normaliser 10 %, `Model::edge_id` re-lookup while emitting 8 %, `str::from_utf8`
//! re-validating Python `str` input 6 %, Python list walk + per-item `format!` of the item
//! name ~5 %, allocator ~3 %. On Chinese the normaliser's per-character `prefix` path
//! (charsmap walk + `from_utf8` per CJK character) was ~20 %.
//!
//! What was done, and what each gave (single runs, noisy):
//! - the Viterbi pass records the winning edge's id per position (texts up to 1 MiB) so
//!   emitting needs no second trie lookup per token; the normalised text goes into a reused
//!   per-thread buffer; `str` input skips UTF-8 validation; the batch binding no longer
//!   formats `texts[i]` for every item: together 1.35–1.6x on both corpora;
//! - the normaliser copies runs of well-formed multi-byte characters whose lead byte starts
//!   no charsmap rule and no protected piece (most CJK text) like plain ASCII runs;
//! - n-best merges the (already sorted) incoming lists with a k-way merge instead of sorting
//!   every candidate, and reuses per-thread scratch buffers instead of allocating a ring of
//!   pools per call;
//! - parallel batches run in contiguous chunks (guided sizes, [`chunk_starts`]) writing one
//!   flat buffer each with the thread's workspace, instead of one `Vec` per item and a
//!   per-split workspace.
//!
//! - perfect sampling records the chosen edge ids in its forward pass as well.
//!
//! `compare.py --engine lattice`, LTO release, old wheel then new wheel back to back (ratio
//! to the reference row of the same run; the machine's load moved sentencepiece's own time
//! by up to 1.5x between runs, so compare ratios, not MB/s):
//!
//! | case                         | before (en / zh) | after (en / zh) |
//! |------------------------------|------------------|-----------------|
//! | Viterbi vs sentencepiece     | 1.88x / 1.70x    | 2.54x / 2.50x   |
//! | 10-best vs sentencepiece     | 1.41x / 1.42x    | 3.44x / 3.13x   |
//! | perfect time / our Viterbi   | 0.87x / 1.46x    | 1.64x / 1.48x   |
//! | 2 threads / 1 thread         | 0.71x / 0.93x    | 1.45x / 1.03x   |
//!
//! (Perfect sampling did not get slower: our Viterbi got faster, 19.7 -> 39.3 MB/s on en and
//! 19.7 -> 51.6 MB/s on zh; perfect went 16.5 -> 23.9 and 21.5 -> 34.2 MB/s.) Thread scaling
//! is dominated by the other jobs sharing the two cores.
//!
//! Not done / did not help: a char-level trie for CJK (each CJK character costs three
//! dependent double-array steps; a code-point-indexed first level would cut that, but it is
//! a larger change); returning n-best as one array plus offsets (would change the API: the
//! ten small numpy arrays per line are now a visible share of `nbest` time).
//!
//! ## Round 3 (issue #3 bars; fastbuild wheel, CPU time, min of 12 runs, same process as
//! sentencepiece; the machine was shared, so ±10 %)
//!
//! Profile of batch Viterbi on botchan before (per unit ≈ 80 cycles at 2.6 GHz): pass
//! relaxation + ends (`run_pass_avx512`) 25 %, lockstep walk 20 %, normaliser 12 %,
//! `CharTrie::symbols` 9 %, `list_edges` 7 %, `emit_from_back` 3 %, `Stream::new` 1 %,
//! Python-side list walk and the rest ~15 %; per-line overhead (one joined text against the
//! 4288 lines) ~10 %.
//!
//! Done, and what each gave:
//! - normaliser: a branch-light ASCII loop (`Normalizer::ascii_fast`): 5.2 -> 1.8 ns/byte on
//!   botchan, no change on zh;
//! - Viterbi winner select by `select_unpredictable` (a `cmov`) instead of a `black_box`
//!   mask (a stack store + reload per edge): with the normaliser, en 45 -> 51 MB/s;
//! - perfect sampling (linear domain): one uniform per edge and the replacement as a select
//!   instead of one uniform per replacement behind a data-dependent branch, and the pass's
//!   `block` with its fields in locals: perfect ÷ Viterbi time 1.50 -> 1.12 (en) and
//!   1.62 -> 1.13 (zh). This changes which segmentation a seed draws (same distribution);
//! - Viterbi items get a constant stream instead of deriving one per item (~1 %).
//!
//! Tried, no gain (left out): `CharTrie::symbols` without the `b < 0x80` branch per
//! character, first as selects (the `p -> load -> length -> p` chain then costs ~8 cycles a
//! unit, 2.5 -> 4.0 ns/unit) and then walking the set bits of an 8-byte word's character
//! starts (also ~4 ns/unit: more work per unit than the mispredicts it saves); the lockstep
//! walk with 3 or 4 blocks in flight instead of 2 (same or slower: the walk is not bound by
//! gather latency with two chains); making the jump-based reservoir branch-free (the stream
//! state then depends on every outcome: a serial chain through a division per edge, slower
//! than the mispredicts); the character trie's units packed in 32 bits (base, flag and a
//! 16-bit check, for tries of at most 2^15 units: both shared models fit) so that a walk
//! step is one 16-lane gather instead of two 8-lane ones (viterbi pass alone, same process,
//! alternating: 4.62 vs 4.68 ms on botchan, 15.58 vs 15.64 ms on zh_fortunes: the walk is
//! not gather-bound either).
//!
//! Still short of the 3x bar on botchan Viterbi (about 2.1-2.2x here): what is left is
//! spread over the relaxation's store-to-load chain through the score ring (~13 cycles per
//! unit: `S(s)` is stored by the last edge into `s` and reloaded by the first edge out of
//! it), the walk (whose depth per 16-lane block is the deepest lane's; refilling finished
//! lanes with new starts would cut it but needs per-start edge lists), and `symbols`.
//! Per-text overhead is the other lever: 4288 botchan lines cost ~25 % more than the same
//! text joined into 268 texts of 16 lines (fixed costs ~130 ns per text — list walk, ring
//! and `back` resets, window setup, trailing partial 16-lane blocks walked as full ones).
//! Packing many short texts into one pass would need the score to restart at exactly 0 at
//! every text boundary (the f32 sums must match SentencePiece's per text), e.g. a
//! separator unit no piece contains whose edge resets the ring slot: not attempted.
//!
//! ## Round 4: the word cache
//! Batch (and single-text) Viterbi now goes word by word through a per-thread, exact word
//! cache where the model allows it (`super::wordcache`, with its proof and figures): en
//! 2.7x -> 5+x sentencepiece. Perfect sampling without a cache went from ~1.1x to ~2x
//! Viterbi's time on botchan; `super::wordsample` (its counterpart: cached word lattices,
//! the same draws bit for bit) brought it to 1.7-1.8x (figures there).

use std::cell::RefCell;

use super::added::Segment;
use super::model::{check_utf8, Model};
use super::sample::{self, check_alpha, Method};
use super::viterbi::{emit_from_back, viterbi, Workspace};
use crate::error::{Error, Result};
use crate::parallel;
use crate::rng::Stream;

/// What `encode` computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Viterbi,
    Sample { alpha: f64, method: Method },
}

impl Mode {
    pub fn new(alpha: Option<f64>, method: &str) -> Result<Mode> {
        let method = Method::parse(method)?;
        match alpha {
            None => Ok(Mode::Viterbi),
            Some(a) => {
                check_alpha(a)?;
                Ok(Mode::Sample { alpha: a, method })
            }
        }
    }
}

thread_local! {
    static WS: RefCell<Workspace> = RefCell::new(Workspace::new());
}

/// Runs `f` with this thread's reusable workspace.
pub fn with_workspace<T>(f: impl FnOnce(&mut Workspace) -> T) -> T {
    WS.with(|w| match w.try_borrow_mut() {
        Ok(mut ws) => f(&mut ws),
        // Re-entered (a callback inside a kernel): use a fresh one, without the word cache
        // (whose table would be allocated and dropped for a single call).
        Err(_) => {
            let mut ws = Workspace::new();
            ws.word_cache_off = true;
            f(&mut ws)
        }
    })
}

/// The model's weights for `alpha`, taken from the workspace where it holds them (the
/// caller puts them back in `ws.weights`): `Model::weights` locks a mutex and counts an
/// `Arc` shared by every thread, per text (1 % of a perfect-sampling batch on one thread,
/// and a contended cache line on two).
fn weights(model: &Model, alpha: f64, ws: &mut Workspace) -> std::sync::Arc<super::model::Weights> {
    match ws.weights.take() {
        Some(w) if w.alpha.to_bits() == alpha.to_bits() && ws.weights_uid == model.uid() => w,
        _ => {
            ws.weights_uid = model.uid();
            model.weights(alpha)
        }
    }
}

/// Segments a prepared text into `ws.path`.
pub fn segment(
    model: &Model,
    prepared: &[u8],
    mode: Mode,
    rng: &mut Stream,
    ws: &mut Workspace,
) -> Result<()> {
    match mode {
        Mode::Viterbi => viterbi(model, prepared, ws),
        Mode::Sample { alpha, method } => {
            let w = weights(model, alpha, ws);
            let r = sample::sample(model, prepared, &w, method, rng, ws).map(|_| ());
            ws.weights = Some(w);
            r
        }
    }
}

/// Smallest chunk of a parallel batch (items), where the items are that many.
const MIN_CHUNK: usize = 16;

/// Threads for a batch of `n` items (`None` = the default count): at most one per
/// [`MIN_CHUNK`] items. Waking a pool worker costs more than encoding a few short lines: a
/// 4-line botchan batch took 8.8 µs on two threads against 4.8 on one, 17 lines 16.7 against
/// 8.4; from two full chunks on, two threads are no slower.
pub fn batch_threads(num_threads: Option<usize>, n: usize) -> Result<usize> {
    Ok(parallel::effective_threads(num_threads, n)?.min((n / MIN_CHUNK).max(1)))
}

/// Where each chunk of a parallel batch of `n` items on `threads` threads starts, then `n`:
/// guided sizes, each chunk `1/(4·threads)` of the items not yet in a chunk (at least
/// [`MIN_CHUNK`]). The first chunks are large (few per-chunk costs), the last small, so a
/// thread that runs out of chunks waits for at most a small one; equal chunks of `n/16` left
/// a thread idle for half a chunk on average at the end (~5% of a 2-thread botchan batch,
/// measured as the gap between the two workers' CPU times). Output never depends on the
/// split (per-item streams): only the balance does.
pub fn chunk_starts(n: usize, threads: usize) -> Vec<usize> {
    let share = 4 * threads.max(1);
    let mut starts = vec![0];
    let mut at = 0;
    while at < n {
        at += ((n - at) / share).max(MIN_CHUNK).min(n - at);
        starts.push(at);
    }
    starts
}

/// Largest ids buffer (entries) a thread keeps between batches (16 MiB).
const KEEP_IDS: usize = 1 << 22;

/// Encodes `items`, the batch's items from index `first` on, with this thread's workspace:
/// their ids in one buffer, and each item's end in it (relative to the chunk).
///
/// The ids are built in the workspace's kept buffer and returned at their exact size. Why
/// not a fresh `Vec`: a batch's ids grown by doubling land in new pages on every call — a
/// 1-thread zh_fortunes×2 batch (1.2 M ids) took ~1,400 page faults per call, 7% of its time
/// in the kernel (`getrusage`, this VM). The kept buffer is mapped already, and the exact-size
/// copy (one `memcpy`, where the doubling copied about as much) fits in the memory the
/// previous call's output left free.
pub fn encode_chunk<T>(
    model: &Model,
    items: &[T],
    first: usize,
    input: impl Fn(&T) -> Input<'_>,
    mode: Mode,
    seed: u64,
    stream_offset: u64,
) -> Result<(Vec<i32>, Vec<i64>)> {
    let mut ends = Vec::with_capacity(items.len());
    with_workspace(|ws| {
        let mut ids = std::mem::take(&mut ws.batch_ids);
        ids.clear();
        let mut done = Ok(());
        for (j, t) in items.iter().enumerate() {
            let i = first + j;
            let mut rng = item_stream(mode, seed, stream_offset, i);
            if let Err(e) = encode_input(model, input(t), mode, &mut rng, ws, &mut ids) {
                done = Err(at_item(e, i));
                break;
            }
            ends.push(ids.len() as i64);
        }
        let out = done.map(|()| (ids.to_vec(), ends));
        if ids.capacity() <= KEEP_IDS {
            ws.batch_ids = ids;
        }
        out
    })
}

/// Encodes one raw text to ids.
pub fn encode(
    model: &Model,
    text: &[u8],
    mode: Mode,
    rng: &mut Stream,
    ws: &mut Workspace,
    out: &mut Vec<i32>,
) -> Result<()> {
    encode_input(model, Input::Bytes(text), mode, rng, ws, out)
}

/// A raw text: bytes (validated as UTF-8 unless the model is byte-level) or a `str`.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    Bytes(&'a [u8]),
    Str(&'a str),
}

/// Encodes one raw text to ids, appending to `out`.
pub fn encode_input(
    model: &Model,
    text: Input<'_>,
    mode: Mode,
    rng: &mut Stream,
    ws: &mut Workspace,
    out: &mut Vec<i32>,
) -> Result<()> {
    // Added tokens first; each text segment is then encoded on its own, drawing from the
    // same stream in turn.
    let split = segmented(model, text, |s, seg| {
        match seg {
            Segment::Text(r) => encode_whole(model, Input::Str(&s[r]), mode, rng, ws, out)?,
            Segment::Token { id, .. } => out.push(id as i32),
        }
        Ok(())
    });
    match split {
        Some(r) => r,
        None => encode_whole(model, text, mode, rng, ws, out),
    }
}

/// When `model` cuts added tokens out of the raw text: `f(text, segment)` for each segment
/// in order (after the UTF-8 check of bytes input), stopping at the first error. `None` when
/// it has no such tokens (the text is then encoded whole).
fn segmented(
    model: &Model,
    text: Input<'_>,
    mut f: impl FnMut(&str, Segment) -> Result<()>,
) -> Option<Result<()>> {
    let sp = model.splitter()?;
    let s = match text {
        Input::Str(s) => s,
        Input::Bytes(b) => match check_utf8(b) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        },
    };
    Some(sp.split(s).into_iter().try_for_each(|seg| f(s, seg)))
}

/// [`encode_input`] of text with no added tokens to cut out.
fn encode_whole(
    model: &Model,
    text: Input<'_>,
    mode: Mode,
    rng: &mut Stream,
    ws: &mut Workspace,
    out: &mut Vec<i32>,
) -> Result<()> {
    let mut norm = std::mem::take(&mut ws.norm);
    let r = encode_prepared(model, text, &mut norm, mode, rng, ws, out);
    ws.norm = norm;
    ws.trim();
    r
}

fn encode_prepared(
    model: &Model,
    text: Input<'_>,
    norm: &mut Vec<u8>,
    mode: Mode,
    rng: &mut Stream,
    ws: &mut Workspace,
    out: &mut Vec<i32>,
) -> Result<()> {
    let prepared = match text {
        Input::Bytes(b) => model.prepare_into(b, norm)?,
        Input::Str(s) => model.prepare_str_into(s, norm)?,
    };
    // Viterbi word by word from the per-thread cache where that is provably exact (see
    // `wordcache`); otherwise (or on any doubt) the full pass below.
    if mode == Mode::Viterbi
        && !ws.word_cache_off
        && super::wordcache::enabled_by_env()
        && ws.word_cache.encode(model, prepared, out)
    {
        return Ok(());
    }
    // Perfect sampling word by word from cached word lattices: the same draws as the full
    // pass, bit for bit (see `wordsample`).
    if let Mode::Sample {
        alpha,
        method: Method::Perfect,
    } = mode
    {
        if !ws.word_cache_off && super::wordcache::enabled_by_env() {
            let w = weights(model, alpha, ws);
            let done = ws.word_lattices.sample(model, prepared, &w, rng, out);
            ws.weights = Some(w);
            if done {
                return Ok(());
            }
        }
    }
    // Single-pass decoders emit straight from their back-pointers (O(L) memory, no path).
    let direct = !matches!(
        mode,
        Mode::Sample {
            method: Method::Ffbs,
            ..
        }
    );
    ws.ids_only = direct;
    let r = segment(model, prepared, mode, rng, ws);
    ws.ids_only = false;
    r?;
    if direct {
        emit_from_back(model, prepared, ws, out)?;
    } else {
        model.emit_ids(prepared, &ws.path, out);
    }
    Ok(())
}

/// Encodes one raw text to ids and, for each, the span of input bytes it came from (see
/// [`Model::emit_spans`]); the ids are those of [`encode_input`] with the same stream. Byte-
/// level models and identity normalisers map bytes to themselves.
pub fn encode_spans(
    model: &Model,
    text: &[u8],
    mode: Mode,
    rng: &mut Stream,
    ws: &mut Workspace,
) -> Result<(Vec<i32>, Vec<[usize; 2]>)> {
    let (mut ids, mut spans) = (Vec::new(), Vec::new());
    let split = segmented(model, Input::Bytes(text), |s, seg| {
        match seg {
            Segment::Text(r) => {
                let (i, sp) = spans_whole(model, s[r.clone()].as_bytes(), mode, rng, ws)?;
                ids.extend(i);
                spans.extend(sp.into_iter().map(|[b, e]| [b + r.start, e + r.start]));
            }
            Segment::Token { id, at } => {
                ids.push(id as i32);
                spans.push([at.start, at.end]);
            }
        }
        Ok(())
    });
    match split {
        Some(r) => r.map(|()| (ids, spans)),
        None => spans_whole(model, text, mode, rng, ws),
    }
}

/// [`encode_spans`] of text with no added tokens to cut out.
fn spans_whole(
    model: &Model,
    text: &[u8],
    mode: Mode,
    rng: &mut Stream,
    ws: &mut Workspace,
) -> Result<(Vec<i32>, Vec<[usize; 2]>)> {
    let normalized;
    let (prepared, offsets): (&[u8], Option<Vec<usize>>) =
        if model.byte_level() || model.normalizer().is_identity() {
            if !model.byte_level() {
                check_utf8(text)?;
            }
            (text, None)
        } else {
            let (n, o) = model.normalizer().normalize_with_offsets(check_utf8(text)?);
            normalized = n;
            (normalized.as_bytes(), Some(o))
        };
    segment(model, prepared, mode, rng, ws)?;
    let (mut ids, mut spans) = (Vec::new(), Vec::new());
    model.emit_ids(prepared, &ws.path, &mut ids);
    match &offsets {
        Some(o) => model.emit_spans(&ws.path, |i| o[i], &mut spans),
        None => model.emit_spans(&ws.path, |i| i, &mut spans),
    }
    ws.trim();
    Ok((ids, spans))
}

/// Turns byte offsets into `text` into character (code point) offsets, in place: what a
/// Python `str` is indexed by. One forward walk when the offsets do not decrease (spans from
/// [`encode_spans`] never do); a smaller offset restarts it. An offset inside a character
/// counts that character as begun.
pub fn spans_to_chars(text: &str, spans: &mut [[usize; 2]]) {
    let b = text.as_bytes();
    let (mut at, mut chars) = (0usize, 0usize);
    for v in spans.iter_mut().flat_map(|s| s.iter_mut()) {
        let want = (*v).min(b.len());
        if want < at {
            (at, chars) = (0, 0);
        }
        // Continuation bytes (0b10xx_xxxx) do not start a character.
        chars += b[at..want].iter().filter(|&&c| c & 0xC0 != 0x80).count();
        at = want;
        *v = chars;
    }
}

/// Encodes one raw text to piece surfaces.
pub fn encode_pieces(
    model: &Model,
    text: &[u8],
    mode: Mode,
    rng: &mut Stream,
    ws: &mut Workspace,
) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut whole = |t: &[u8], out: &mut Vec<Vec<u8>>| {
        let prepared = model.prepare(t)?;
        segment(model, &prepared, mode, rng, ws)?;
        out.extend(model.emit_pieces(&prepared, &ws.path));
        Ok(())
    };
    let split = segmented(model, Input::Bytes(text), |s, seg| {
        match seg {
            Segment::Text(r) => whole(s[r].as_bytes(), &mut out)?,
            Segment::Token { at, .. } => out.push(s[at].as_bytes().to_vec()),
        }
        Ok(())
    });
    split.unwrap_or_else(|| whole(text, &mut out))?;
    Ok(out)
}

/// Prefixes an error message with the batch item it came from, keeping its kind.
pub fn at_item(e: Error, i: usize) -> Error {
    match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("texts[{i}]: {m}")),
        Error::WrongType(m) => Error::WrongType(format!("texts[{i}]: {m}")),
        Error::Limit(m) => Error::Limit(format!("texts[{i}]: {m}")),
        Error::Io(m) => Error::Io(format!("texts[{i}]: {m}")),
        Error::Internal(m) => Error::Internal(format!("texts[{i}]: {m}")),
        f @ Error::Format { .. } => f,
    }
}

/// Item `i`'s random stream; Viterbi draws nothing, so it gets a constant one instead of
/// paying for the seed derivation per item (1.5 % of batch Viterbi time on short lines).
#[inline(always)]
fn item_stream(mode: Mode, seed: u64, stream_offset: u64, i: usize) -> Stream {
    match mode {
        Mode::Viterbi => Stream::fixed(),
        Mode::Sample { .. } => Stream::new(seed, stream_offset.wrapping_add(i as u64)),
    }
}

/// Flat batch output: `ids[offsets[i]..offsets[i+1]]` are item `i`'s ids (Arrow list layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flat {
    pub ids: Vec<i32>,
    pub offsets: Vec<i64>,
}

/// Encodes a batch on `num_threads` threads (None = default); see the module docs for seeds.
pub fn encode_batch<T: AsRef<[u8]> + Sync>(
    model: &Model,
    texts: &[T],
    mode: Mode,
    seed: u64,
    stream_offset: u64,
    num_threads: Option<usize>,
) -> Result<Flat> {
    encode_batch_with(
        model,
        texts,
        |t| Input::Bytes(t.as_ref()),
        mode,
        seed,
        stream_offset,
        num_threads,
    )
}

/// As [`encode_batch`] for texts known to be UTF-8 (no validation pass).
pub fn encode_batch_str<T: AsRef<str> + Sync>(
    model: &Model,
    texts: &[T],
    mode: Mode,
    seed: u64,
    stream_offset: u64,
    num_threads: Option<usize>,
) -> Result<Flat> {
    encode_batch_with(
        model,
        texts,
        |t| Input::Str(t.as_ref()),
        mode,
        seed,
        stream_offset,
        num_threads,
    )
}

fn encode_batch_with<T: Sync>(
    model: &Model,
    texts: &[T],
    input: impl Fn(&T) -> Input<'_> + Sync,
    mode: Mode,
    seed: u64,
    stream_offset: u64,
    num_threads: Option<usize>,
) -> Result<Flat> {
    let threads = batch_threads(num_threads, texts.len())?;
    if threads <= 1 {
        // Straight into one flat buffer: no per-item vectors.
        let (ids, ends) = encode_chunk(model, texts, 0, input, mode, seed, stream_offset)?;
        let mut offsets = Vec::with_capacity(texts.len() + 1);
        offsets.push(0i64);
        offsets.extend(ends);
        return Ok(Flat { ids, offsets });
    }
    // Contiguous chunks, several per thread for balance: each chunk writes one flat buffer
    // with its thread's reusable workspace (no vector per item), and the serial tail only
    // concatenates a few dozen buffers.
    let starts = chunk_starts(texts.len(), threads);
    let parts: Vec<(Vec<i32>, Vec<i64>)> = parallel::run(Some(threads), texts.len(), |par| {
        parallel::map(par, starts.len() - 1, |c| {
            let items = &texts[starts[c]..starts[c + 1]];
            encode_chunk(model, items, starts[c], &input, mode, seed, stream_offset)
        })
        .into_iter()
        .collect::<Result<Vec<_>>>()
    })??;
    Ok(concat_chunks(&parts, texts.len()))
}

/// The chunks' buffers (ids, and each item's end relative to its chunk), in item order, as
/// one [`Flat`]. A serial copy: ~0.1 ms of a 3.7 ms 2-thread botchan batch; copying on the
/// pool instead left that pool's threads spinning beside the next batch's workers.
pub fn concat_chunks(parts: &[(Vec<i32>, Vec<i64>)], n_items: usize) -> Flat {
    let total: usize = parts.iter().map(|p| p.0.len()).sum();
    let mut ids = Vec::with_capacity(total);
    let mut offsets = Vec::with_capacity(n_items + 1);
    offsets.push(0i64);
    for (p, ends) in parts {
        let base = ids.len() as i64;
        ids.extend_from_slice(p);
        offsets.extend(ends.iter().map(|&e| base + e));
    }
    Flat { ids, offsets }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::model::tests::{arb_model, arb_text, spm_like};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// `encode_spans` gives `encode`'s ids for the same stream (Viterbi and every sampler)
        /// or its error, and spans that tile the text in order: on these unnormalised models
        /// each token starts where the previous one ended, the first at 0, the last ending at
        /// the text's end (byte-fallback pieces before a character's last one are empty).
        #[test]
        fn spans_tile_the_text_and_ids_match_encode(
            m in arb_model(4), text in arb_text(30), seed in any::<u64>(), k in 0usize..4
        ) {
            let mode = match k {
                0 => Mode::Viterbi,
                1 => Mode::new(Some(0.5), "perfect").unwrap(),
                2 => Mode::new(Some(0.5), "ffbs").unwrap(),
                _ => Mode::new(Some(0.0), "viterbi-sampling").unwrap(),
            };
            let mut ws = Workspace::new();
            let mut want = Vec::new();
            let r = encode(&m, &text, mode, &mut Stream::new(seed, 3), &mut ws, &mut want);
            let got = encode_spans(&m, &text, mode, &mut Stream::new(seed, 3), &mut ws);
            match (r, got) {
                (Ok(()), Ok((ids, spans))) => {
                    prop_assert_eq!(&ids, &want);
                    prop_assert_eq!(spans.len(), ids.len());
                    let mut at = 0;
                    for &[b, e] in &spans {
                        prop_assert_eq!(b, at);
                        prop_assert!(e >= b);
                        at = e;
                    }
                    prop_assert_eq!(at, text.len());
                }
                (Err(_), Err(_)) => {}
                (r, got) => prop_assert!(false, "encode {:?} but encode_spans {:?}", r, got.map(|g| g.0)),
            }
        }
    }

    fn viterbi_spans(m: &Model, text: &str) -> (Vec<i32>, Vec<[usize; 2]>) {
        let (mut rng, mut ws) = (Stream::new(0, 0), Workspace::new());
        encode_spans(m, text.as_bytes(), Mode::Viterbi, &mut rng, &mut ws).unwrap()
    }

    /// Normalised text maps back through the normaliser's offsets: the dummy-prefix `▁` and
    /// collapsed spaces go to the token they start, merged UNKs cover every character.
    #[test]
    fn spans_follow_the_normaliser() {
        let m = spm_like(&[("▁ab", -1.0), ("▁", -2.0), ("c", -2.0)]);
        let text = "  ab   c☃☃ ab";
        let (ids, spans) = viterbi_spans(&m, text);
        let pieces: Vec<_> = ids
            .iter()
            .map(|&i| String::from_utf8_lossy(m.piece(i as u32).unwrap()).into_owned())
            .collect();
        assert_eq!(pieces, ["▁ab", "▁", "c", "<unk>", "▁ab"]);
        let surfaces: Vec<&str> = spans.iter().map(|&[b, e]| &text[b..e]).collect();
        assert_eq!(surfaces, ["ab", "   ", "c", "☃☃", " ab"]);
    }

    /// Byte fallback: a character no piece covers becomes one byte piece per UTF-8 byte, all
    /// starting at the character and only the last one ending after it (SentencePiece's
    /// `begin`/`end`); a byte without its `<0xXX>` piece falls back to UNK.
    #[test]
    fn byte_fallback_spans_end_on_the_last_byte() {
        use crate::lattice::vocab::{PieceKind, PieceSpec};
        let mut v = spm_like(&[("a", -1.0), ("b", -1.0)]).spec().clone();
        v.normalizer.add_dummy_prefix = false;
        for b in [0xE2u8, 0x98] {
            v.pieces.push(PieceSpec {
                piece: format!("<0x{b:02X}>").into_bytes(),
                score: 0.0,
                kind: PieceKind::Byte,
            });
        }
        v.byte_fallback = true;
        let m = Model::from_spec(v).unwrap();
        let text = "a☃b"; // ☃ = E2 98 83
        let (ids, spans) = viterbi_spans(&m, text);
        assert_eq!(ids, [1, 3, 4, 0, 2]);
        assert_eq!(spans, [[0, 1], [1, 1], [1, 1], [1, 4], [4, 5]]);
    }

    /// Byte offsets to character offsets, with a restart when an offset goes back.
    #[test]
    fn spans_to_chars_counts_code_points() {
        let text = "aé中😀b";
        let mut s = vec![
            [0, 1],
            [1, 3],
            [3, 6],
            [6, 10],
            [10, 11],
            [3, 11],
            [0, 0],
            [11, 99],
        ];
        spans_to_chars(text, &mut s);
        assert_eq!(
            s,
            vec![
                [0, 1],
                [1, 2],
                [2, 3],
                [3, 4],
                [4, 5],
                [2, 5],
                [0, 0],
                [5, 5]
            ]
        );
    }

    /// One thread per full chunk at most; the requested count otherwise; bad counts rejected.
    #[test]
    fn batch_threads_need_a_chunk_each() {
        assert_eq!(batch_threads(Some(4), 0).unwrap(), 1);
        assert_eq!(batch_threads(Some(4), 31).unwrap(), 1);
        assert_eq!(batch_threads(Some(4), 32).unwrap(), 2);
        assert_eq!(batch_threads(Some(4), 1000).unwrap(), 4);
        assert_eq!(batch_threads(Some(1), 1000).unwrap(), 1);
        assert!(batch_threads(Some(0), 1000).is_err());
    }

    /// The thread's kept ids buffer never leaks into a result: batches of different sizes,
    /// and one after a failed batch, on one thread (the buffer's only user per call) and two,
    /// equal their items encoded alone, and come out at their exact size.
    #[test]
    fn batches_reuse_the_ids_buffer_without_mixing() {
        let m = spm_like(&[("▁a", -1.0), ("b", -2.0), ("▁ab", -1.5), ("c", -3.0)]);
        let alone = |t: &str| {
            let mut out = Vec::new();
            let mut ws = Workspace::new();
            encode(
                &m,
                t.as_bytes(),
                Mode::Viterbi,
                &mut Stream::new(0, 0),
                &mut ws,
                &mut out,
            )
            .unwrap();
            out
        };
        let big: Vec<String> = (0..3000).map(|i| "ab c ".repeat(1 + i % 9)).collect();
        let small = ["abc", "", "b a"];
        for threads in [1, 2] {
            for texts in [&big[..], &big[..5]] {
                let f = encode_batch(&m, texts, Mode::Viterbi, 0, 0, Some(threads)).unwrap();
                assert_eq!(f.ids.len(), f.ids.capacity());
                for (i, t) in texts.iter().enumerate() {
                    let (a, b) = (f.offsets[i] as usize, f.offsets[i + 1] as usize);
                    assert_eq!(f.ids[a..b], alone(t)[..], "item {i}");
                }
            }
            let bad: [&[u8]; 3] = [b"abab", b"\xff", b"c"];
            assert!(encode_batch(&m, &bad, Mode::Viterbi, 0, 0, Some(threads)).is_err());
            let f = encode_batch(&m, &small, Mode::Viterbi, 0, 0, Some(threads)).unwrap();
            let want: Vec<i32> = small.iter().flat_map(|t| alone(t)).collect();
            assert_eq!(f.ids, want);
        }
    }

    /// Chunks tile `0..n` in order, none empty, each at least `MIN_CHUNK` but the last, and
    /// never larger than the one before (guided: large first, small last).
    #[test]
    fn chunk_starts_tile_the_batch() {
        for threads in 1..=16 {
            for n in (0..300).chain([1000, 9_000, 57_737, 1 << 20]) {
                let s = chunk_starts(n, threads);
                assert_eq!((s[0], *s.last().unwrap()), (0, n), "n={n} t={threads}");
                let sizes: Vec<usize> = s.windows(2).map(|w| w[1] - w[0]).collect();
                assert!(sizes.iter().all(|&k| k > 0), "n={n} t={threads}: {sizes:?}");
                let body = &sizes[..sizes.len().saturating_sub(1)];
                assert!(body.iter().all(|&k| k >= MIN_CHUNK), "n={n}: {sizes:?}");
                assert!(sizes.windows(2).all(|w| w[1] <= w[0]), "n={n}: {sizes:?}");
                if n >= 1000 {
                    // Several chunks per thread, and the last ones small.
                    let want = (4 * threads).min(n / MIN_CHUNK);
                    assert!(sizes.len() >= want, "n={n} t={threads}: {}", sizes.len());
                    assert!(*sizes.last().unwrap() <= MIN_CHUNK);
                }
            }
        }
    }
}
