//! Benchmarks of the shared plumbing: random streams and the pool hand-off cost.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use probcraft::{parallel, rng};
use std::hint::black_box;

fn streams(c: &mut Criterion) {
    let mut g = c.benchmark_group("rng");
    g.throughput(Throughput::Elements(1 << 16));
    g.bench_function("xoshiro_next_f64_x65536", |b| {
        let mut s = rng::Stream::new(1, 2);
        b.iter(|| {
            let mut acc = 0.0;
            for _ in 0..(1 << 16) {
                acc += s.next_f64();
            }
            black_box(acc)
        })
    });
    g.bench_function("stream_new", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(rng::Stream::new(7, i))
        })
    });
    g.finish();
}

fn pool(c: &mut Criterion) {
    use rayon::prelude::*;
    let mut g = c.benchmark_group("parallel");
    g.bench_function("run_inline_single_item", |b| {
        b.iter(|| parallel::run(Some(2), 1, |_| black_box(1u64)).unwrap())
    });
    g.bench_function("run_2_threads_sum_1e5", |b| {
        b.iter(|| {
            parallel::run(Some(2), 100_000, |_| {
                (0..100_000u64).into_par_iter().sum::<u64>()
            })
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, streams, pool);
criterion_main!(benches);
