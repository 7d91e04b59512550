//! Criterion benches of the softmax-family kernels (no Python): throughput in bytes of input.
//! Run `cargo bench --bench simplex`; side-by-side peers are in `benches/peers_softmax.py`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::{ArrayD, IxDyn};
use probcraft::simplex::{entmax, softmax, sparsemax, topk, Params};

fn data(rows: usize, cols: usize) -> ArrayD<f32> {
    let mut s = 0x9E37_79B9u32;
    ArrayD::from_shape_fn(IxDyn(&[rows, cols]), |_| {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s as f32 / u32::MAX as f32 - 0.5) * 6.0
    })
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("simplex_f32");
    for &(r, n) in &[(4096usize, 1024usize), (64, 65536), (8, 262_144)] {
        let x = data(r, n);
        let mut out = x.clone();
        g.throughput(Throughput::Bytes((r * n * 4) as u64));
        let id = format!("{r}x{n}");
        g.bench_with_input(BenchmarkId::new("softmax", &id), &x, |b, x| {
            b.iter(|| {
                softmax::softmax(&x.view(), 1, Params::ONE, &mut out.view_mut(), Some(1)).unwrap()
            })
        });
        if r == 4096 {
            g.bench_with_input(BenchmarkId::new("sparsemax", &id), &x, |b, x| {
                b.iter(|| sparsemax::sparsemax(&x.view(), 1, &mut out.view_mut(), Some(1)).unwrap())
            });
            g.bench_with_input(BenchmarkId::new("entmax15", &id), &x, |b, x| {
                b.iter(|| entmax::entmax15(&x.view(), 1, &mut out.view_mut(), Some(1)).unwrap())
            });
            g.bench_with_input(BenchmarkId::new("entmax_1.25", &id), &x, |b, x| {
                b.iter(|| {
                    entmax::entmax(&x.view(), 1, Params(&[1.25]), &mut out.view_mut(), Some(1))
                        .unwrap()
                })
            });
            g.bench_with_input(BenchmarkId::new("topk10", &id), &x, |b, x| {
                b.iter(|| {
                    topk::topk_softmax(&x.view(), 1, Params(&[10.0]), &mut out.view_mut(), Some(1))
                        .unwrap()
                })
            });
        }
    }
    g.finish();
    // float64 (the AVX-512 kernel has its own 8-lane path) on the first shape.
    let mut g = c.benchmark_group("simplex_f64");
    let x = data(4096, 1024).mapv(|v| v as f64);
    let mut out = x.clone();
    g.throughput(Throughput::Bytes((4096 * 1024 * 8) as u64));
    g.bench_with_input(BenchmarkId::new("softmax", "4096x1024"), &x, |b, x| {
        b.iter(|| {
            softmax::softmax(&x.view(), 1, Params::ONE, &mut out.view_mut(), Some(1)).unwrap()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
