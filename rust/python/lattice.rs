//! `probcraft._core.Unigram`: the lattice engine's binding. Every method converts its
//! arguments, then runs the kernel through [`guarded`] (GIL released, panics caught);
//! `nbest` on a short text (`len(text) * k <= NBEST_KEEP_GIL`) only catches panics and
//! keeps the GIL for its few microseconds.

use std::sync::Arc;

use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple, PyType};

use super::{guarded, pickle, to_pyerr};
use crate::error::{catch_panic, Error, Result};
use crate::lattice::batch::{self, with_workspace, Mode};
use crate::lattice::codeunits::{self, push_utf8, CodeUnits};
use crate::lattice::graph::Lattice;
use crate::lattice::marginals;
use crate::lattice::model::Model;
use crate::lattice::nbest;
use crate::lattice::sample::{self, check_alpha, Method};
use crate::lattice::swor;
use crate::lattice::vocab::{PieceKind, VocabSpec};
use crate::rng::{self, Stream};

/// Per-thread buffers of `nbest` (normalised text and flat results), reused across calls.
#[derive(Default)]
struct NBestBuf {
    norm: Vec<u8>,
    out: nbest::NBestIds,
}

thread_local! {
    static NBEST_BUF: std::cell::Cell<NBestBuf> = std::cell::Cell::new(NBestBuf::default());
}

/// `[(ids, score), ...]` from flat results: every `ids` is a 1-D int32 view into one array
/// holding all of them (its `base`), so a call costs two numpy allocations plus one small one
/// per result instead of two per result, the largest cost of a 10-best call on a short line.
/// The views do not overlap, so writing into one never changes another. The list and the
/// tuples are built in place (`PyList_New` / `PyTuple_New` and their `SET_ITEM`s: no
/// intermediate `Vec`, no iterator protocol) and the int32 descriptor is looked up once.
fn nbest_list<'py>(py: Python<'py>, out: &nbest::NBestIds) -> PyResult<Bound<'py, PyList>> {
    use pyo3::ffi;
    let views = Views::new(py, PyArray1::<i32>::from_slice(py, &out.ids));
    let n = out.len();
    let list = new_list(py, n)?;
    for i in 0..n {
        let view = views.view(out.offsets[i], out.offsets[i + 1])?;
        let score = PyFloat::new(py, out.scores[i]);
        // `PyObject_GC_UnTrack`: the tuple holds an ndarray and a float, neither of which the
        // cycle collector tracks, so it can never be part of a reference cycle, and
        // untracking it (what the collector itself would do on its next pass) only spares
        // that pass.
        // SAFETY: `PyTuple_New(2)` returns a new tuple (or null, turned into the error) whose
        // two slots `SET_ITEM` fills, each stealing the reference `into_ptr` hands over; the
        // tuple's own reference then moves into slot `i` of `list` (null until now).
        unsafe {
            let t = ffi::PyTuple_New(2);
            if t.is_null() {
                return Err(PyErr::fetch(py));
            }
            ffi::PyTuple_SET_ITEM(t, 0, view.into_ptr());
            ffi::PyTuple_SET_ITEM(t, 1, score.into_ptr());
            ffi::PyObject_GC_UnTrack(t.cast());
            ffi::PyList_SET_ITEM(list.as_ptr(), i as ffi::Py_ssize_t, t);
        }
    }
    Ok(list)
}

/// A list of `n` empty (null) slots, each to be set once by `PyList_SET_ITEM`.
fn new_list(py: Python<'_>, n: usize) -> PyResult<Bound<'_, PyList>> {
    use pyo3::ffi;
    // SAFETY: `PyList_New` returns a new reference (or null, turned into the error); its
    // items start as null, which `list_dealloc` accepts, so an early return frees a partly
    // filled list correctly.
    unsafe {
        Ok(
            Bound::from_owned_ptr_or_err(py, ffi::PyList_New(n as ffi::Py_ssize_t))?
                .cast_into_unchecked::<PyList>(),
        )
    }
}

/// 1-D int32 views into one array (their `base`), made by the numpy C API directly: a view
/// costs one array object, not the slice object and subscript dispatch of `base[a:b]`, and
/// the int32 descriptor is looked up once.
struct Views<'py> {
    py: Python<'py>,
    base: Bound<'py, PyArray1<i32>>,
    data: *mut i32,
    descr: Bound<'py, numpy::PyArrayDescr>,
    array_type: *mut pyo3::ffi::PyTypeObject,
}

impl<'py> Views<'py> {
    fn new(py: Python<'py>, base: Bound<'py, PyArray1<i32>>) -> Self {
        use numpy::npyffi::{NpyTypes, PY_ARRAY_API};
        use numpy::{Element, PyArrayMethods};
        let data = base.data();
        // SAFETY: the numpy C API is initialised (`base` exists) and the GIL is held (`py`).
        let array_type = unsafe { PY_ARRAY_API.get_type_object(py, NpyTypes::PyArray_Type) };
        Views {
            py,
            base,
            data,
            descr: i32::get_dtype(py),
            array_type,
        }
    }

    /// `base[a:b]` (`a <= b <= len(base)`), writeable; the views of disjoint ranges do not
    /// overlap, so writing into one never changes another.
    fn view(&self, a: usize, b: usize) -> PyResult<Bound<'py, PyAny>> {
        use numpy::npyffi::{self, npy_intp, PY_ARRAY_API};
        use numpy::{PyArrayDescrMethods, PyUntypedArrayMethods};
        assert!(a <= b && b <= self.base.len());
        let py = self.py;
        let mut dims = [(b - a) as npy_intp];
        // SAFETY: `data` points at `len(base)` int32 elements owned by `base`, and `a..b` lies
        // within them (asserted); the new array gets a strong reference to `base` as its base
        // object (`SetBaseObject` steals the one `into_ptr` hands over), so the memory
        // outlives the view; `PyArray_NewFromDescr` steals the descriptor reference that
        // `into_dtype_ptr` hands over. A null return (out of memory) is turned into the
        // Python error.
        unsafe {
            let ptr = PY_ARRAY_API.PyArray_NewFromDescr(
                py,
                self.array_type,
                self.descr.clone().into_dtype_ptr(),
                1,
                dims.as_mut_ptr(),
                std::ptr::null_mut(),
                self.data.add(a).cast(),
                npyffi::NPY_ARRAY_WRITEABLE,
                std::ptr::null_mut(),
            );
            let view = Bound::from_owned_ptr_or_err(py, ptr)?;
            if PY_ARRAY_API.PyArray_SetBaseObject(
                py,
                ptr.cast::<npyffi::PyArrayObject>(),
                self.base.clone().into_ptr(),
            ) != 0
            {
                return Err(PyErr::fetch(py));
            }
            Ok(view)
        }
    }
}

/// Sets `list[first + k]` to item `k` of a batch chunk: its ids become one array, and each
/// item a view of `ends[k - 1]..ends[k]` in it.
fn fill_chunk(list: &Bound<'_, PyList>, first: usize, ids: Vec<i32>, ends: &[i64]) -> PyResult<()> {
    use pyo3::ffi;
    let views = Views::new(list.py(), ids.into_pyarray(list.py()));
    let mut a = 0;
    for (k, &b) in ends.iter().enumerate() {
        let view = views.view(a, b as usize)?;
        assert!(first + k < list.len());
        // SAFETY: slot `first + k` is in the list (asserted) and still null (each chunk fills
        // its own slots once); `SET_ITEM` steals the view's reference.
        unsafe {
            ffi::PyList_SET_ITEM(
                list.as_ptr(),
                (first + k) as ffi::Py_ssize_t,
                view.into_ptr(),
            )
        };
        a = b as usize;
    }
    Ok(())
}

/// Rejects a single text (`str`, `bytes`, `bytearray`, `memoryview`) passed where a batch is
/// expected: iterated, the last two yield ints, and the error named an int item instead.
fn check_batch(texts: &Bound<'_, PyAny>) -> PyResult<()> {
    if texts.is_instance_of::<PyString>()
        || texts.is_instance_of::<PyBytes>()
        || texts.is_instance_of::<PyByteArray>()
        || texts.is_instance_of::<pyo3::types::PyMemoryView>()
    {
        return Err(PyTypeError::new_err(format!(
            "texts must be a sequence of str or bytes, not a single {}",
            texts.get_type().name()?
        )));
    }
    Ok(())
}

/// A non-ASCII `str` with no UTF-8 copy cached on it, read as its code units (PEP 393): the
/// batch kernels transcode it without the GIL ([`item_inputs`]) instead of CPython building
/// (under the GIL, on the one thread that reads the items) a UTF-8 copy that then stays on the
/// user's string. See `lattice::codeunits`.
struct WideStr {
    /// Keeps the string, so its code units, alive.
    owner: Py<PyString>,
    /// Bytes per code unit: 1 (latin-1) or 2 (UCS-2).
    kind: u32,
    data: *const std::ffi::c_void,
    len: usize,
}

// SAFETY: `data` points into `owner`'s immutable character storage, which lives (and does not
// change: a `str` is immutable once made) as long as the reference in `owner`; reading it from
// another thread needs no GIL. `Py<PyString>` itself is `Send + Sync`.
unsafe impl Send for WideStr {}
// SAFETY: as above (shared references only read the immutable code units).
unsafe impl Sync for WideStr {}

impl WideStr {
    /// `s` as code units when it is a compact non-ASCII string stored as latin-1 or UCS-2,
    /// without a cached UTF-8 copy, and the vector transcoder runs here
    /// (`codeunits::fast`); otherwise `None`, and `PyBackedStr` reads its UTF-8 (for free
    /// when ASCII or cached). UCS-4 strings (with characters beyond the BMP) and machines
    /// without the vector kernel keep CPython's encoder: the scalar transcoder is no faster,
    /// and a string read again later (the next epoch of a dataset) reuses CPython's copy.
    fn new(s: &Bound<'_, PyString>) -> Option<WideStr> {
        use pyo3::ffi;
        let op = s.as_ptr();
        // SAFETY: `op` is a live `str` (we hold `s`, and the GIL); these are CPython's own
        // accessors for its PEP 393 layout, read in the order it documents (compact first:
        // only a compact object has the `PyCompactUnicodeObject` header read for `utf8`).
        unsafe {
            if ffi::PyUnicode_IS_COMPACT(op) == 0 || ffi::PyUnicode_IS_ASCII(op) != 0 {
                return None;
            }
            if !(*op.cast::<ffi::PyCompactUnicodeObject>()).utf8.is_null() || !codeunits::fast() {
                return None;
            }
            let kind = ffi::PyUnicode_KIND(op);
            if !matches!(kind, 1 | 2) {
                return None;
            }
            Some(WideStr {
                owner: s.clone().unbind(),
                kind,
                data: ffi::PyUnicode_DATA(op),
                len: ffi::PyUnicode_GET_LENGTH(op) as usize,
            })
        }
    }

    fn units(&self) -> CodeUnits<'_> {
        // SAFETY: `data` holds `len` units of `kind` bytes each, aligned for that width
        // (CPython's layout), alive and unchanged while `owner` is (see the `Send` impl).
        unsafe {
            match self.kind {
                1 => CodeUnits::Latin1(std::slice::from_raw_parts(self.data.cast(), self.len)),
                _ => CodeUnits::Ucs2(std::slice::from_raw_parts(self.data.cast(), self.len)),
            }
        }
    }

    /// The exception CPython raises for this string's UTF-8 (it holds a lone surrogate):
    /// exactly what reading it as UTF-8 up front raised.
    fn utf8_error(&self, py: Python<'_>) -> PyErr {
        match PyBackedStr::try_from(self.owner.bind(py).clone()) {
            Err(e) => e,
            Ok(_) => to_pyerr(Error::Internal(
                "a str that failed to transcode has a UTF-8 form".into(),
            )),
        }
    }
}

/// An item of a batch: a text argument, or a `str` read as its code units.
enum Item {
    Text(Text),
    Wide(WideStr),
}

/// Item `i` of a batch argument.
fn batch_item(t: &Bound<'_, PyAny>, i: usize) -> PyResult<Item> {
    // The common case without building the item's name (only an error needs it).
    if let Ok(s) = t.cast::<PyString>() {
        if let Some(w) = WideStr::new(s) {
            return Ok(Item::Wide(w));
        }
        return Ok(Item::Text(Text::Str(PyBackedStr::try_from(s.clone())?)));
    }
    text_arg(t, &format!("texts[{i}]")).map(Item::Text)
}

/// The first of `items` that cannot be read as UTF-8 (a `str` holding a lone surrogate, which
/// [`batch_item`] does not transcode yet), and its exception: reported before any later
/// failure, as when each item was made UTF-8 while it was read.
fn first_unreadable(py: Python<'_>, items: &[Item]) -> Option<(usize, PyErr)> {
    items.iter().enumerate().find_map(|(k, it)| match it {
        Item::Wide(w) if w.units().first_unencodable().is_some() => Some((k, w.utf8_error(py))),
        _ => None,
    })
}

/// The items of a batch argument (a sequence of `str` or bytes-like, not one of them).
fn batch_items(texts: &Bound<'_, PyAny>) -> PyResult<Vec<Item>> {
    check_batch(texts)?;
    let mut items = Vec::with_capacity(texts.len().unwrap_or(0));
    for (i, t) in texts.try_iter()?.enumerate() {
        match t.and_then(|t| batch_item(&t, i)) {
            Ok(x) => items.push(x),
            Err(e) => return Err(first_unreadable(texts.py(), &items).map_or(e, |(_, e)| e)),
        }
    }
    Ok(items)
}

/// The kernels' inputs for `items`: each [`Item::Wide`] transcoded to UTF-8 into `buf`
/// (without the GIL). `Err(k)`: item `k` cannot be (see [`first_unreadable`]).
fn item_inputs<'a>(
    items: &'a [Item],
    buf: &'a mut String,
) -> std::result::Result<Vec<batch::Input<'a>>, usize> {
    buf.clear();
    // Room for the longest encoding up front (no copy while it grows).
    let most: usize = items
        .iter()
        .map(|it| match it {
            Item::Wide(w) => w.len * (w.kind as usize + 1),
            Item::Text(_) => 0,
        })
        .sum();
    buf.reserve(most);
    let mut spans = Vec::new();
    for (k, it) in items.iter().enumerate() {
        if let Item::Wide(w) = it {
            let a = buf.len();
            push_utf8(w.units(), buf).map_err(|_| k)?;
            spans.push(a..buf.len());
        }
    }
    let buf: &'a str = buf;
    let mut spans = spans.into_iter();
    Ok(items
        .iter()
        .map(|it| match it {
            Item::Text(t) => t.input(),
            Item::Wide(_) => batch::Input::Str(&buf[spans.next().expect("one span per item")]),
        })
        .collect())
}

/// The exception for `items[k]`, which [`item_inputs`] could not read.
fn unreadable_item(py: Python<'_>, items: &[Item], k: usize) -> PyErr {
    match &items[k] {
        Item::Wide(w) => w.utf8_error(py),
        Item::Text(_) => to_pyerr(Error::Internal("unreadable text".into())),
    }
}

/// A chunk encoded, or the index (in the chunk) of the item that could not be read.
enum Encoded {
    Done(Vec<i32>, Vec<i64>),
    Unreadable(usize),
}

/// [`batch::encode_chunk`] of a chunk of items (the first of them item `first`).
fn encode_items(
    model: &Model,
    items: &[Item],
    first: usize,
    mode: Mode,
    seed: u64,
    stream_offset: u64,
) -> Result<Encoded> {
    let mut buf = String::new();
    match item_inputs(items, &mut buf) {
        Ok(inputs) => {
            let (ids, ends) =
                batch::encode_chunk(model, &inputs, first, |x| *x, mode, seed, stream_offset)?;
            Ok(Encoded::Done(ids, ends))
        }
        Err(k) => Ok(Encoded::Unreadable(k)),
    }
}

/// A batch argument with a length: itself, or (an iterable without one) its items in a list.
fn batch_seq<'py>(texts: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, usize)> {
    check_batch(texts)?;
    match texts.len() {
        Ok(n) => Ok((texts.clone(), n)),
        Err(_) => {
            let all: Vec<Bound<'py, PyAny>> = texts.try_iter()?.collect::<PyResult<_>>()?;
            let list = PyList::new(texts.py(), all)?;
            let n = list.len();
            Ok((list.into_any(), n))
        }
    }
}

/// What the pool hands back for chunk `c`: its items (dropped here, under the GIL) and its
/// ids and item ends, or the error.
type ChunkDone = (usize, Vec<Item>, Result<Encoded>);

/// Finished chunks on their way from the pool to the reading thread, which is woken only
/// when as many as it asked for are queued. (A channel woke it for every chunk: a futex
/// wake and two context switches per chunk, ~3% of a 2-thread botchan batch in this VM's
/// scheduler, on the thread whose work nothing else overlaps.)
struct Finished {
    /// The queue, and how long it must be before a worker wakes the reader
    /// (`usize::MAX` while the reader is not waiting: no wake, no futex call).
    state: std::sync::Mutex<(Vec<ChunkDone>, usize)>,
    ready: std::sync::Condvar,
}

impl Finished {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<ChunkDone>, usize)> {
        // A worker never panics while holding the lock (panics are caught around the
        // encoding, before it), so a poisoned lock still holds a consistent queue.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, done: ChunkDone) {
        let mut g = self.lock();
        g.0.push(done);
        if g.0.len() >= g.1 {
            g.1 = usize::MAX;
            self.ready.notify_one();
        }
    }

    /// What is queued now, without waiting.
    fn take(&self) -> Vec<ChunkDone> {
        std::mem::take(&mut self.lock().0)
    }

    /// Waits (without the GIL) until at least `at_least` chunks are queued, and takes them.
    fn wait(&self, py: Python<'_>, at_least: usize) -> Vec<ChunkDone> {
        py.detach(|| {
            let mut g = self.lock();
            while g.0.len() < at_least {
                g.1 = at_least;
                g = self.ready.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            g.1 = usize::MAX;
            std::mem::take(&mut g.0)
        })
    }
}

/// What [`encode_pipelined`] encodes with.
struct BatchJob<'a> {
    model: &'a Model,
    mode: Mode,
    seed: u64,
    stream_offset: u64,
    threads: usize,
}

/// A chunk read and not yet encoded: its index and items.
type ChunkTodo = (usize, Vec<Item>);

/// The queue of [`Todo`], and whether the reader has stopped adding to it.
type TodoState = (std::collections::VecDeque<ChunkTodo>, bool);

/// Chunks read but not yet encoded, taken by whichever thread is free: the pool's workers
/// and, once it has read everything, the reading thread itself.
struct Todo {
    state: std::sync::Mutex<TodoState>,
    ready: std::sync::Condvar,
}

impl Todo {
    fn lock(&self) -> std::sync::MutexGuard<'_, TodoState> {
        // Nothing panics while holding the lock: a poisoned one still holds a valid queue.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, c: usize, items: Vec<Item>) {
        self.lock().0.push_back((c, items));
        self.ready.notify_one();
    }

    /// The next chunk without waiting (the reading thread).
    fn try_pop(&self) -> Option<ChunkTodo> {
        self.lock().0.pop_front()
    }

    /// The next chunk, waiting while the queue is empty but still open (a worker); `None`
    /// once it is closed and empty.
    fn pop(&self) -> Option<ChunkTodo> {
        let mut g = self.lock();
        loop {
            if let Some(x) = g.0.pop_front() {
                return Some(x);
            }
            if g.1 {
                return None;
            }
            g = self.ready.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// No more chunks; with `drop_queued`, the unstarted ones are handed back (to be
    /// dropped with the GIL) rather than encoded.
    fn close(&self, drop_queued: bool) -> Vec<ChunkTodo> {
        let mut g = self.lock();
        g.1 = true;
        let left = if drop_queued {
            g.0.drain(..).collect()
        } else {
            Vec::new()
        };
        drop(g);
        self.ready.notify_all();
        left
    }
}

/// Closes the queue on every way out of the scope's body (an error included), so that no
/// worker waits on it forever and the scope can end.
struct CloseOnDrop<'a>(&'a Todo);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        // What was still queued holds Python references: dropped here, under the GIL
        // (the guard lives inside the GIL-holding scope body).
        drop(self.0.close(true));
    }
}

/// Encodes the `n` items of `texts` on `job.threads` (at least 2) threads: this one, which
/// holds the GIL and reads the items, and `job.threads − 1` pool workers. Each chunk
/// (`batch::chunk_starts(n, threads)`) is queued as soon as its items are read (~20 ns per
/// item, only possible under the GIL), and taken by a free worker; once everything is read,
/// this thread takes chunks too (without the GIL) until none is left, and then waits for the
/// workers' last ones. `done(first, ids, ends)` runs here, with the GIL, for each finished
/// chunk, in completion order (`first`: its first item). With `eager` it runs as soon as this
/// thread sees a chunk finished (the list form builds the chunk's arrays), otherwise they are
/// only collected (the flat form). An unreadable item is reported before any encoding error
/// (as when every item was read first); otherwise the lowest chunk's encoding error.
///
/// Why this thread encodes too: with a pool of `threads` workers, three threads shared the
/// two vCPUs of a 2-thread batch, and each time the reader ran (reading, making arrays) it
/// displaced a worker from its core and caches: the workers' CPU time per zh_fortunes list
/// batch was ~35% above the one-thread encode (schedstat, per thread).
fn encode_pipelined(
    py: Python<'_>,
    texts: &Bound<'_, PyAny>,
    n: usize,
    job: &BatchJob<'_>,
    eager: bool,
    mut done: impl FnMut(usize, Vec<i32>, Vec<i64>) -> PyResult<()>,
) -> PyResult<()> {
    let starts = batch::chunk_starts(n, job.threads);
    let chunks = starts.len() - 1;
    let finished = Finished {
        state: std::sync::Mutex::new((Vec::new(), usize::MAX)),
        ready: std::sync::Condvar::new(),
    };
    let todo = Todo {
        state: std::sync::Mutex::new((std::collections::VecDeque::new(), false)),
        ready: std::sync::Condvar::new(),
    };
    let (finished, todo) = (&finished, &todo);
    let mut iter = texts.try_iter()?;
    let (model, mode, seed, offset) = (job.model, job.mode, job.seed, job.stream_offset);
    let starts = &starts;
    let encode = move |c: usize, items: &[Item]| {
        catch_panic(|| encode_items(model, items, starts[c], mode, seed, offset))
    };
    let encode = &encode;
    let workers = job.threads.max(2) - 1;
    crate::parallel::in_place_scope(workers, |s| {
        let _close = CloseOnDrop(todo);
        for _ in 0..workers {
            s.spawn(move |_| {
                while let Some((c, items)) = todo.pop() {
                    let r = encode(c, &items);
                    finished.push((c, items, r));
                }
            });
        }
        // The first item that could not be read (by the iteration, or as UTF-8 by a worker),
        // and the first chunk's encoding error: the former is reported first.
        let mut unreadable: Option<(usize, PyErr)> = None;
        let mut failed: Option<(usize, Error)> = None;
        // Chunks queued and not yet back here.
        let mut pending = 0usize;
        let note_unreadable = |u: &mut Option<(usize, PyErr)>, i: usize, e: PyErr| {
            if u.as_ref().is_none_or(|(j, _)| i < *j) {
                *u = Some((i, e));
            }
        };
        let mut take = |got: Vec<ChunkDone>,
                        failed: &mut Option<(usize, Error)>,
                        unreadable: &mut Option<(usize, PyErr)>| {
            for (c, items, r) in got {
                match r {
                    Ok(Encoded::Done(ids, ends)) if failed.is_none() && unreadable.is_none() => {
                        done(starts[c], ids, ends)?
                    }
                    Ok(Encoded::Done(..)) => {}
                    Ok(Encoded::Unreadable(k)) => {
                        note_unreadable(unreadable, starts[c] + k, unreadable_item(py, &items, k))
                    }
                    Err(e) => {
                        if failed.as_ref().is_none_or(|(k, _)| c < *k) {
                            *failed = Some((c, e));
                        }
                    }
                }
                drop(items);
            }
            PyResult::Ok(())
        };
        let mut read_failed = false;
        'read: for c in 0..chunks {
            let (lo, hi) = (starts[c], starts[c + 1]);
            let mut items = Vec::with_capacity(hi - lo);
            for i in lo..hi {
                let e = match iter.next() {
                    Some(t) => match t.and_then(|t| batch_item(&t, i)) {
                        Ok(x) => {
                            items.push(x);
                            continue;
                        }
                        Err(e) => e,
                    },
                    None => changed_length(n),
                };
                // The items of this chunk read so far are not encoded: one of them may be an
                // earlier unreadable one.
                if let Some((k, e)) = first_unreadable(py, &items) {
                    note_unreadable(&mut unreadable, lo + k, e);
                }
                note_unreadable(&mut unreadable, i, e);
                read_failed = true;
                break 'read;
            }
            todo.push(c, items);
            pending += 1;
            if eager {
                // Chunks already finished: take them now, while the workers go on.
                let got = finished.take();
                pending -= got.len();
                take(got, &mut failed, &mut unreadable)?;
            }
        }
        if !read_failed && iter.next().is_some() {
            note_unreadable(&mut unreadable, n, changed_length(n));
            read_failed = true;
        }
        if read_failed {
            // The error is what the call returns: the chunks not yet started are not encoded
            // (only checked for an earlier unreadable item).
            let left = todo.close(true);
            pending -= left.len();
            for (c, items) in left {
                if let Some((k, e)) = first_unreadable(py, &items) {
                    note_unreadable(&mut unreadable, starts[c] + k, e);
                }
            }
        } else {
            todo.close(false);
            // Help: encode what no worker has taken yet, taking finished chunks in between.
            while let Some((c, items)) = todo.try_pop() {
                let r = py.detach(|| encode(c, &items));
                pending -= 1;
                take(vec![(c, items, r)], &mut failed, &mut unreadable)?;
                if eager {
                    let got = finished.take();
                    pending -= got.len();
                    take(got, &mut failed, &mut unreadable)?;
                }
            }
        }
        // The workers' last chunks.
        while pending > 0 {
            let got = finished.wait(py, pending);
            pending -= got.len();
            take(got, &mut failed, &mut unreadable)?;
        }
        if let Some((_, e)) = unreadable {
            return Err(e);
        }
        match failed {
            Some((_, e)) => Err(to_pyerr(e)),
            None => Ok(()),
        }
    })
    .map_err(to_pyerr)?
}

/// The batch methods' arguments checked: the job, the texts as a sequence, and its length.
#[allow(clippy::too_many_arguments)]
fn batch_job<'a, 'py>(
    model: &'a Model,
    texts: &Bound<'py, PyAny>,
    alpha: Option<f64>,
    seed: Option<u64>,
    num_threads: Option<usize>,
    method: &str,
    stream_offset: u64,
) -> PyResult<(BatchJob<'a>, Bound<'py, PyAny>, usize)> {
    let mode = Mode::new(alpha, method).map_err(to_pyerr)?;
    let seed = seed_or_fresh(seed);
    let (texts, n) = batch_seq(texts)?;
    let threads = batch::batch_threads(num_threads, n).map_err(to_pyerr)?;
    let job = BatchJob {
        model,
        mode,
        seed,
        stream_offset,
        threads,
    };
    Ok((job, texts, n))
}

fn changed_length(n: usize) -> PyErr {
    to_pyerr(Error::invalid(format!(
        "texts changed length while being read (len() was {n})"
    )))
}

/// Texts up to this many bytes times `k` run `nbest` without releasing the GIL: a few
/// microseconds of work, less than the release and re-acquisition cost in share of a short
/// line's call (see `rust/lattice/nbest.rs`, performance notes).
const NBEST_KEEP_GIL: usize = 1 << 14;

/// Largest number of draws `sample` accepts in one call.
const MAX_DRAWS: usize = 1 << 20;

/// A text argument: `str` (UTF-8 by construction) or bytes-like (validated later, with the
/// offset of the first invalid byte in the error).
enum Text {
    Str(PyBackedStr),
    Bytes(PyBackedBytes),
    Owned(Vec<u8>),
}

impl Text {
    /// As the batch kernels take it: a `str` skips UTF-8 validation.
    fn input(&self) -> batch::Input<'_> {
        match self {
            Text::Str(s) => batch::Input::Str(s),
            _ => batch::Input::Bytes(self.bytes()),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Text::Str(s) => s.as_bytes(),
            Text::Bytes(b) => b,
            Text::Owned(v) => v,
        }
    }
}

fn text_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Text> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Text::Str(PyBackedStr::try_from(s.clone())?));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Text::Bytes(PyBackedBytes::from(b.clone())));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Text::Owned(b.to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be str or bytes, not {}",
        obj.get_type().name()?
    )))
}

/// Model file contents from bytes-like data or a path (`str` / `os.PathLike`).
fn source_arg(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    let py = obj.py();
    let fspath = py.import("os")?.getattr("fspath")?;
    let path = fspath.call1((obj,)).map_err(|_| {
        PyTypeError::new_err(format!(
            "expected a path (str or os.PathLike) or bytes, not {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let path: std::path::PathBuf = path.extract()?;
    guarded(py, || {
        std::fs::read(&path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
    })
}

/// Token ids from a 1-D integer numpy array or any sequence of ints.
fn ids_arg(obj: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "ids must be a sequence of ints, not str/bytes",
        ));
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, i64>>() {
        return Ok(a.as_array().to_vec());
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, i32>>() {
        return Ok(a.as_array().iter().map(|&x| x as i64).collect());
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, u32>>() {
        return Ok(a.as_array().iter().map(|&x| x as i64).collect());
    }
    obj.extract::<Vec<i64>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "ids must be a 1-D sequence of ints, not {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}

fn seed_or_fresh(seed: Option<u64>) -> u64 {
    seed.unwrap_or_else(rng::os_seed)
}

fn path_ids(model: &Model, text: &[u8], path: &[(usize, usize, u32)]) -> Vec<i32> {
    let mut out = Vec::with_capacity(path.len());
    model.emit_ids(text, path, &mut out);
    out
}

fn path_log_weight(model: &Model, path: &[(usize, usize, u32)], alpha: f64) -> f64 {
    alpha * path.iter().map(|&(_, _, id)| model.score(id)).sum::<f64>()
}

/// A unigram segmentation model (see `probcraft.Unigram` for the documented façade).
#[pyclass(frozen, module = "probcraft._core")]
pub struct Unigram {
    model: Arc<Model>,
}

impl Unigram {
    fn build(py: Python<'_>, f: impl FnOnce() -> Result<VocabSpec> + Send) -> PyResult<Unigram> {
        let model = guarded(py, || Model::from_spec(f()?))?;
        Ok(Unigram {
            model: Arc::new(model),
        })
    }

    fn piece_object<'py>(&self, py: Python<'py>, p: &[u8]) -> Bound<'py, PyAny> {
        match std::str::from_utf8(p) {
            Ok(s) if !self.model.byte_level() => PyString::new(py, s).into_any(),
            _ => PyBytes::new(py, p).into_any(),
        }
    }
}

#[pymethods]
impl Unigram {
    #[classmethod]
    fn from_sentencepiece(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        path_or_bytes: &Bound<'_, PyAny>,
    ) -> PyResult<Unigram> {
        let data = source_arg(path_or_bytes)?;
        Unigram::build(py, || crate::lattice::spm::load(&data))
    }

    #[classmethod]
    fn from_hf_json(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        path_or_bytes: &Bound<'_, PyAny>,
    ) -> PyResult<Unigram> {
        let data = source_arg(path_or_bytes)?;
        Unigram::build(py, || crate::lattice::formats::load_hf_json(&data))
    }

    #[classmethod]
    fn from_bytepiece(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        path_or_bytes: &Bound<'_, PyAny>,
    ) -> PyResult<Unigram> {
        let data = source_arg(path_or_bytes)?;
        Unigram::build(py, || crate::lattice::formats::load_bytepiece_json(&data))
    }

    #[classmethod]
    fn from_jieba_dict(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        path_or_bytes: &Bound<'_, PyAny>,
    ) -> PyResult<Unigram> {
        let data = source_arg(path_or_bytes)?;
        Unigram::build(py, || crate::lattice::formats::load_jieba_dict(&data))
    }

    /// `pieces`: `(piece, log_prob)` pairs, piece as `str` (or `bytes` when `byte_level`).
    /// `unk`: index of a piece to act as the UNK piece (its edges score `min − 10`).
    #[classmethod]
    #[pyo3(signature = (pieces, *, unk=None, byte_level=false))]
    fn from_pieces(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        pieces: &Bound<'_, PyAny>,
        unk: Option<usize>,
        byte_level: bool,
    ) -> PyResult<Unigram> {
        if pieces.is_instance_of::<PyString>() || pieces.is_instance_of::<PyDict>() {
            return Err(PyTypeError::new_err(
                "pieces must be a sequence of (piece, log_prob) pairs",
            ));
        }
        let mut list: Vec<(Vec<u8>, f32)> = Vec::new();
        for (i, item) in pieces.try_iter()?.enumerate() {
            let item = item?;
            let pair = item.cast::<PyTuple>().map_err(|_| {
                PyTypeError::new_err(format!("pieces[{i}] must be a (piece, log_prob) tuple"))
            })?;
            if pair.len() != 2 {
                return Err(PyTypeError::new_err(format!(
                    "pieces[{i}] must have 2 items, has {}",
                    pair.len()
                )));
            }
            let p = pair.get_item(0)?;
            let bytes = if let Ok(s) = p.cast::<PyString>() {
                s.to_str()?.as_bytes().to_vec()
            } else if let Ok(b) = p.cast::<PyBytes>() {
                b.as_bytes().to_vec()
            } else {
                return Err(PyTypeError::new_err(format!(
                    "pieces[{i}][0] must be str or bytes"
                )));
            };
            let score: f64 = pair
                .get_item(1)?
                .extract()
                .map_err(|_| PyTypeError::new_err(format!("pieces[{i}][1] must be a float")))?;
            if score.is_finite() && !(score as f32).is_finite() {
                // Otherwise reported as "non-finite score -inf" for a finite input.
                return Err(to_pyerr(crate::Error::Limit(format!(
                    "pieces[{i}][1] = {score:e} does not fit a float32 score; scores are \
                     log-probabilities and must lie within ±{:e}",
                    crate::lattice::model::MAX_ABS_SCORE
                ))));
            }
            list.push((bytes, score as f32));
        }
        Unigram::build(py, move || {
            let mut spec = VocabSpec::from_pieces(list);
            spec.byte_level = byte_level;
            if let Some(u) = unk {
                let total = spec.pieces.len();
                let p = spec.pieces.get_mut(u).ok_or_else(|| {
                    Error::invalid(format!("unk={u} is out of range for {total} pieces"))
                })?;
                p.kind = PieceKind::Unknown;
                spec.unk_id = Some(u as u32);
            }
            Ok(spec)
        })
    }

    /// A model from probcraft's own vocabulary bytes (`to_bytes`).
    #[classmethod]
    fn from_bytes(_cls: &Bound<'_, PyType>, py: Python<'_>, data: &[u8]) -> PyResult<Unigram> {
        let data = data.to_vec();
        Unigram::build(py, move || VocabSpec::from_bytes(&data))
    }

    #[classmethod]
    fn _from_state(_cls: &Bound<'_, PyType>, py: Python<'_>, state: &[u8]) -> PyResult<Unigram> {
        let data = state.to_vec();
        Unigram::build(py, move || VocabSpec::from_bytes(&data))
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.model.spec().to_bytes())
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        pickle::reduce(slf.as_any(), &slf.get().model.spec().to_bytes())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Unigram>()
            .map(|o| o.get().model.spec() == self.model.spec())
            .unwrap_or(false)
    }

    fn __hash__(&self) -> u64 {
        let b = self.model.spec().to_bytes();
        b.iter().fold(0u64, |h, &x| rng::mix64(h ^ x as u64))
    }

    fn __repr__(&self) -> String {
        format!(
            "Unigram(vocab_size={}, source={:?}, byte_level={})",
            self.model.vocab_size(),
            self.model.spec().source,
            self.model.byte_level()
        )
    }

    fn __len__(&self) -> usize {
        self.model.vocab_size()
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    #[getter]
    fn unk_id(&self) -> Option<u32> {
        self.model.unk_id()
    }

    #[getter]
    fn byte_level(&self) -> bool {
        self.model.byte_level()
    }

    #[getter]
    fn source(&self) -> String {
        self.model.spec().source.clone()
    }

    fn id_to_piece<'py>(&self, py: Python<'py>, i: i64) -> PyResult<Bound<'py, PyAny>> {
        let n = self.model.vocab_size();
        if i < 0 || i as u64 >= n as u64 {
            return Err(to_pyerr(Error::invalid(format!(
                "id {i} is out of range for a vocabulary of {n} pieces"
            ))));
        }
        Ok(self.piece_object(py, self.model.piece(i as u32).unwrap_or(b"")))
    }

    fn piece_to_id(&self, piece: &Bound<'_, PyAny>) -> PyResult<Option<u32>> {
        let t = text_arg(piece, "piece")?;
        Ok(self.model.piece_to_id(t.bytes()))
    }

    fn score(&self, i: i64) -> PyResult<f64> {
        let n = self.model.vocab_size();
        if i < 0 || i as u64 >= n as u64 {
            return Err(to_pyerr(Error::invalid(format!(
                "id {i} is out of range for a vocabulary of {n} pieces"
            ))));
        }
        Ok(self.model.spec().pieces[i as usize].score as f64)
    }

    /// The text the lattice runs over (normalised; raw bytes for byte-level models).
    fn normalize<'py>(
        &self,
        py: Python<'py>,
        text: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let t = text_arg(text, "text")?;
        let m = self.model.clone();
        let out = guarded(py, || m.prepare(t.bytes()).map(|c| c.into_owned()))?;
        Ok(self.piece_object(py, &out))
    }

    #[pyo3(signature = (text, *, alpha=None, seed=None, method="perfect"))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        text: &Bound<'py, PyAny>,
        alpha: Option<f64>,
        seed: Option<u64>,
        method: &str,
    ) -> PyResult<Bound<'py, PyArray1<i32>>> {
        let t = text_arg(text, "text")?;
        let mode = Mode::new(alpha, method).map_err(to_pyerr)?;
        let m = self.model.clone();
        let seed = seed_or_fresh(seed);
        let ids = guarded(py, || {
            with_workspace(|ws| {
                let mut out = Vec::new();
                batch::encode_input(&m, t.input(), mode, &mut Stream::new(seed, 0), ws, &mut out)?;
                Ok(out)
            })
        })?;
        Ok(ids.into_pyarray(py))
    }

    /// `(ids, spans)`: the ids of [`Self::encode`] for the same arguments and an `(n, 2)`
    /// int64 array of where each came from in `text` (characters for a `str`, bytes for
    /// bytes-like input).
    #[pyo3(signature = (text, *, alpha=None, seed=None, method="perfect"))]
    #[allow(clippy::type_complexity)]
    fn encode_with_spans<'py>(
        &self,
        py: Python<'py>,
        text: &Bound<'py, PyAny>,
        alpha: Option<f64>,
        seed: Option<u64>,
        method: &str,
    ) -> PyResult<(Bound<'py, PyArray1<i32>>, Bound<'py, PyArray2<i64>>)> {
        let t = text_arg(text, "text")?;
        let mode = Mode::new(alpha, method).map_err(to_pyerr)?;
        let m = self.model.clone();
        let seed = seed_or_fresh(seed);
        let (ids, flat) = guarded(py, || {
            let (ids, mut spans) = with_workspace(|ws| {
                batch::encode_spans(&m, t.bytes(), mode, &mut Stream::new(seed, 0), ws)
            })?;
            if let Text::Str(s) = &t {
                batch::spans_to_chars(s, &mut spans);
            }
            // Offsets fit i64: they are at most the length of a Python object.
            let flat: Vec<i64> = spans.iter().flatten().map(|&v| v as i64).collect();
            Ok((ids, flat))
        })?;
        let n = ids.len();
        Ok((ids.into_pyarray(py), flat.into_pyarray(py).reshape([n, 2])?))
    }

    #[pyo3(signature = (text, *, alpha=None, seed=None, method="perfect"))]
    fn encode_as_pieces<'py>(
        &self,
        py: Python<'py>,
        text: &Bound<'py, PyAny>,
        alpha: Option<f64>,
        seed: Option<u64>,
        method: &str,
    ) -> PyResult<Bound<'py, PyList>> {
        let t = text_arg(text, "text")?;
        let mode = Mode::new(alpha, method).map_err(to_pyerr)?;
        let m = self.model.clone();
        let seed = seed_or_fresh(seed);
        let pieces = guarded(py, || {
            with_workspace(|ws| {
                batch::encode_pieces(&m, t.bytes(), mode, &mut Stream::new(seed, 0), ws)
            })
        })?;
        let items: Vec<Bound<'py, PyAny>> =
            pieces.iter().map(|p| self.piece_object(py, p)).collect();
        PyList::new(py, items)
    }

    /// Returns `(ids, offsets)`: item `i` is `ids[offsets[i]:offsets[i+1]]`. On more than one
    /// thread the items are read while the pool encodes the chunks read before them
    /// ([`encode_pipelined`]).
    #[pyo3(signature = (texts, *, alpha=None, seed=None, num_threads=None, method="perfect", stream_offset=0))]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn encode_batch_flat<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        alpha: Option<f64>,
        seed: Option<u64>,
        num_threads: Option<usize>,
        method: &str,
        stream_offset: u64,
    ) -> PyResult<(Bound<'py, PyArray1<i32>>, Bound<'py, PyArray1<i64>>)> {
        let (job, texts, n) = batch_job(
            &self.model,
            texts,
            alpha,
            seed,
            num_threads,
            method,
            stream_offset,
        )?;
        let (mode, seed, threads) = (job.mode, job.seed, job.threads);
        if threads > 1 {
            // Keyed by first item: in item order below.
            let mut parts = std::collections::BTreeMap::new();
            encode_pipelined(py, &texts, n, &job, false, |first, ids, ends| {
                parts.insert(first, (ids, ends));
                Ok(())
            })?;
            let parts: Vec<_> = parts.into_values().collect();
            let flat = py.detach(|| batch::concat_chunks(&parts, n));
            return Ok((flat.ids.into_pyarray(py), flat.offsets.into_pyarray(py)));
        }
        let items = batch_items(&texts)?;
        let m = self.model.clone();
        let flat = guarded(py, || {
            let mut buf = String::new();
            let inputs = match item_inputs(&items, &mut buf) {
                Ok(inputs) => inputs,
                Err(k) => return Ok(Err(k)),
            };
            // All `str` (the usual case): their UTF-8 needs no second validation.
            let strs: Option<Vec<&str>> = inputs
                .iter()
                .map(|t| match t {
                    batch::Input::Str(s) => Some(*s),
                    batch::Input::Bytes(_) => None,
                })
                .collect();
            if let Some(strs) = strs {
                return batch::encode_batch_str(&m, &strs, mode, seed, stream_offset, num_threads)
                    .map(Ok);
            }
            let refs: Vec<&[u8]> = inputs
                .iter()
                .map(|t| match t {
                    batch::Input::Str(s) => s.as_bytes(),
                    batch::Input::Bytes(b) => b,
                })
                .collect();
            batch::encode_batch(&m, &refs, mode, seed, stream_offset, num_threads).map(Ok)
        })?
        .map_err(|k| unreadable_item(py, &items, k))?;
        Ok((flat.ids.into_pyarray(py), flat.offsets.into_pyarray(py)))
    }

    /// A list of int32 arrays, item `i` drawing from stream `(seed, stream_offset + i)`.
    /// On more than one thread the pool encodes chunks while this thread, holding the GIL,
    /// reads the next items and turns each finished chunk into its arrays (one per chunk, a
    /// view per item; see [`encode_pipelined`]): neither, both only possible under the GIL,
    /// runs serially before or after the encoding.
    #[pyo3(signature = (texts, *, alpha=None, seed=None, num_threads=None, method="perfect", stream_offset=0))]
    #[allow(clippy::too_many_arguments)]
    fn encode_batch_list<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        alpha: Option<f64>,
        seed: Option<u64>,
        num_threads: Option<usize>,
        method: &str,
        stream_offset: u64,
    ) -> PyResult<Bound<'py, PyList>> {
        let (job, texts, n) = batch_job(
            &self.model,
            texts,
            alpha,
            seed,
            num_threads,
            method,
            stream_offset,
        )?;
        let (mode, seed, threads) = (job.mode, job.seed, job.threads);
        if threads <= 1 {
            // Sized by the items read (a `len()` that disagrees with iteration must not leave
            // empty slots).
            let items = batch_items(&texts)?;
            let list = new_list(py, items.len())?;
            let m: &Model = &self.model;
            let (ids, ends) =
                match guarded(py, || encode_items(m, &items, 0, mode, seed, stream_offset))? {
                    Encoded::Done(ids, ends) => (ids, ends),
                    Encoded::Unreadable(k) => return Err(unreadable_item(py, &items, k)),
                };
            fill_chunk(&list, 0, ids, &ends)?;
            return Ok(list);
        }
        // Every slot is filled, or an error returned (`encode_pipelined` checks the length).
        let list = new_list(py, n)?;
        encode_pipelined(py, &texts, n, &job, true, |first, ids, ends| {
            fill_chunk(&list, first, ids, &ends)
        })?;
        Ok(list)
    }

    fn decode<'py>(&self, py: Python<'py>, ids: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let ids = ids_arg(ids)?;
        let m = self.model.clone();
        let out = guarded(py, || m.decode(&ids))?;
        Ok(PyString::new(py, &String::from_utf8_lossy(&out)).into_any())
    }

    fn decode_bytes<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let ids = ids_arg(ids)?;
        let m = self.model.clone();
        let out = guarded(py, || m.decode(&ids))?;
        Ok(PyBytes::new(py, &out))
    }

    fn nbest<'py>(
        &self,
        py: Python<'py>,
        text: &Bound<'py, PyAny>,
        k: i64,
    ) -> PyResult<Bound<'py, PyList>> {
        let t = text_arg(text, "text")?;
        if k < 0 {
            return Err(to_pyerr(Error::invalid(format!("k must be >= 0, got {k}"))));
        }
        // Borrowed, not cloned: no reference-count round trip per call.
        let m: &Model = &self.model;
        // The output buffers move out of this thread's cache and back (no allocation per
        // call); a re-entrant call in between finds the cache empty and starts fresh ones.
        let mut buf = NBEST_BUF.with(|b| b.take());
        let keep_gil = t.bytes().len().saturating_mul(k as usize) <= NBEST_KEEP_GIL;
        let run = || {
            let prepared = match t.input() {
                batch::Input::Str(s) => m.prepare_str_into(s, &mut buf.norm)?,
                batch::Input::Bytes(b) => m.prepare_into(b, &mut buf.norm)?,
            };
            nbest::nbest_ids(m, prepared, k as usize, &mut buf.out)?;
            Ok(buf)
        };
        let buf = if keep_gil {
            catch_panic(run).map_err(to_pyerr)?
        } else {
            guarded(py, run)?
        };
        let list = nbest_list(py, &buf.out);
        if buf.out.ids.capacity() <= 1 << 20 && buf.norm.capacity() <= 1 << 20 {
            NBEST_BUF.with(|b| b.set(buf));
        }
        list
    }

    /// `replace=True`: `n` independent draws (draw `i` uses stream `(seed, i)`), each
    /// `(ids, log_prob)`. `replace=False`: up to `n` distinct segmentations (Gumbel-top-k),
    /// each `(ids, log_prob, inclusion_probability)`.
    #[pyo3(signature = (text, n, *, alpha, seed=None, replace=true, method="perfect"))]
    #[allow(clippy::too_many_arguments)]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        text: &Bound<'py, PyAny>,
        n: i64,
        alpha: f64,
        seed: Option<u64>,
        replace: bool,
        method: &str,
    ) -> PyResult<Bound<'py, PyList>> {
        let t = text_arg(text, "text")?;
        if n < 0 || n as u64 > MAX_DRAWS as u64 {
            return Err(to_pyerr(Error::invalid(format!(
                "n must be in 0..={MAX_DRAWS}, got {n}"
            ))));
        }
        let n = n as usize;
        check_alpha(alpha).map_err(to_pyerr)?;
        let method = Method::parse(method).map_err(to_pyerr)?;
        let m = self.model.clone();
        let seed = seed_or_fresh(seed);
        let draws = guarded(py, || {
            let prepared = m.prepare(t.bytes())?;
            let w = m.weights(alpha);
            if !replace {
                let lat = Lattice::build(&m, &prepared)?;
                let mut rng = Stream::new(seed, 0);
                let s = swor::sample_without_replacement(&m, &prepared, &lat, &w, n, &mut rng)?;
                return Ok(s
                    .into_iter()
                    .map(|(p, lp, q)| (path_ids(&m, &prepared, &p), lp, Some(q)))
                    .collect::<Vec<_>>());
            }
            // FFBS shares one lattice across draws.
            let lat = if method == Method::Ffbs && n > 0 {
                Some(Lattice::build(&m, &prepared)?)
            } else {
                None
            };
            let mut log_z = None;
            let mut out = Vec::with_capacity(n);
            with_workspace(|ws| -> Result<()> {
                for i in 0..n {
                    let mut rng = Stream::new(seed, i as u64);
                    let lz = match &lat {
                        Some(l) => sample::ffbs(&m, &prepared, l, &w, &mut rng, &mut ws.path)?,
                        None => sample::sample(&m, &prepared, &w, method, &mut rng, ws)?,
                    };
                    let lz = if lz.is_nan() {
                        match log_z {
                            Some(z) => z,
                            None => {
                                let l = Lattice::build(&m, &prepared)?;
                                let z = marginals::log_partition(&m, &prepared, &l, &w)?;
                                log_z = Some(z);
                                z
                            }
                        }
                    } else {
                        lz
                    };
                    let lp = path_log_weight(&m, &ws.path, alpha) - lz;
                    out.push((path_ids(&m, &prepared, &ws.path), lp, None));
                }
                Ok(())
            })?;
            Ok(out)
        })?;
        let items: Vec<Bound<'py, PyAny>> = draws
            .into_iter()
            .map(|(ids, lp, q)| -> PyResult<Bound<'py, PyAny>> {
                let arr = ids.into_pyarray(py).into_any();
                Ok(match q {
                    Some(q) => (arr, lp, q).into_pyobject(py)?.into_any(),
                    None => (arr, lp).into_pyobject(py)?.into_any(),
                })
            })
            .collect::<PyResult<_>>()?;
        PyList::new(py, items)
    }

    #[pyo3(signature = (text, alpha=1.0))]
    fn log_partition(&self, py: Python<'_>, text: &Bound<'_, PyAny>, alpha: f64) -> PyResult<f64> {
        let t = text_arg(text, "text")?;
        let m = self.model.clone();
        guarded(py, || {
            check_alpha(alpha)?;
            let prepared = m.prepare(t.bytes())?;
            let lat = Lattice::build(&m, &prepared)?;
            marginals::log_partition(&m, &prepared, &lat, &m.weights(alpha))
        })
    }

    #[pyo3(signature = (text, alpha=1.0))]
    fn entropy(&self, py: Python<'_>, text: &Bound<'_, PyAny>, alpha: f64) -> PyResult<f64> {
        let t = text_arg(text, "text")?;
        let m = self.model.clone();
        guarded(py, || {
            check_alpha(alpha)?;
            let prepared = m.prepare(t.bytes())?;
            let lat = Lattice::build(&m, &prepared)?;
            marginals::entropy(&m, &prepared, &lat, &m.weights(alpha))
        })
    }

    #[pyo3(signature = (text, ids, alpha=1.0))]
    fn log_prob(
        &self,
        py: Python<'_>,
        text: &Bound<'_, PyAny>,
        ids: &Bound<'_, PyAny>,
        alpha: f64,
    ) -> PyResult<f64> {
        let t = text_arg(text, "text")?;
        let ids = ids_arg(ids)?;
        let m = self.model.clone();
        guarded(py, || {
            check_alpha(alpha)?;
            let prepared = m.prepare(t.bytes())?;
            let w = m.weights(alpha);
            let lw = marginals::log_weight_of_ids(&m, &prepared, &ids, &w)?;
            let lat = Lattice::build(&m, &prepared)?;
            Ok(lw - marginals::log_partition(&m, &prepared, &lat, &w)?)
        })
    }

    /// Returns a dict: `log_z`, `entropy`, `expected_tokens`, `expected_score`, `piece_ids` and
    /// `piece_counts` (expected count per piece with non-zero mass), `boundary` (probability of
    /// a token boundary at each byte offset of `normalized`), `edge_start`, `edge_end`,
    /// `edge_id`, `edge_prob`, and `normalized` (the text the offsets refer to).
    #[pyo3(signature = (text, alpha=1.0))]
    fn marginals<'py>(
        &self,
        py: Python<'py>,
        text: &Bound<'py, PyAny>,
        alpha: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let t = text_arg(text, "text")?;
        let m = self.model.clone();
        let (prepared, mg) = guarded(py, || {
            check_alpha(alpha)?;
            let prepared = m.prepare(t.bytes())?;
            let lat = Lattice::build(&m, &prepared)?;
            let mg = marginals::marginals(&m, &prepared, &lat, &m.weights(alpha))?;
            Ok((prepared.into_owned(), mg))
        })?;
        let d = PyDict::new(py);
        d.set_item("log_z", mg.log_z)?;
        d.set_item("entropy", mg.entropy)?;
        d.set_item("expected_tokens", mg.expected_tokens)?;
        d.set_item("expected_score", mg.expected_score)?;
        let (ids, counts): (Vec<i32>, Vec<f64>) = mg
            .piece_counts
            .iter()
            .map(|&(i, c)| (self.model.out_id(i), c))
            .unzip();
        d.set_item("piece_ids", ids.into_pyarray(py))?;
        d.set_item("piece_counts", counts.into_pyarray(py))?;
        d.set_item("boundary", mg.boundary.into_pyarray(py))?;
        let es: Vec<i64> = mg.edges.iter().map(|e| e.0 as i64).collect();
        let ee: Vec<i64> = mg.edges.iter().map(|e| e.1 as i64).collect();
        let ei: Vec<i32> = mg.edges.iter().map(|e| self.model.out_id(e.2)).collect();
        let ep: Vec<f64> = mg.edges.iter().map(|e| e.3).collect();
        d.set_item("edge_start", es.into_pyarray(py))?;
        d.set_item("edge_end", ee.into_pyarray(py))?;
        d.set_item("edge_id", ei.into_pyarray(py))?;
        d.set_item("edge_prob", ep.into_pyarray(py))?;
        d.set_item("normalized", self.piece_object(py, &prepared))?;
        Ok(d)
    }

    /// `(id, start, probability)` for every possible last token, highest first; `start` is a
    /// byte offset into `normalize(text)`.
    #[pyo3(signature = (text, alpha=1.0))]
    fn prefix_candidates(
        &self,
        py: Python<'_>,
        text: &Bound<'_, PyAny>,
        alpha: f64,
    ) -> PyResult<Vec<(i32, usize, f64)>> {
        let t = text_arg(text, "text")?;
        let m = self.model.clone();
        guarded(py, || {
            check_alpha(alpha)?;
            let prepared = m.prepare(t.bytes())?;
            let lat = Lattice::build(&m, &prepared)?;
            let c = marginals::prefix_candidates(&m, &prepared, &lat, &m.weights(alpha))?;
            Ok(c.into_iter().map(|(i, s, p)| (m.out_id(i), s, p)).collect())
        })
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Unigram>()?;
    Ok(())
}
