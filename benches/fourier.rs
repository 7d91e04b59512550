//! Fourier densities: pdf / cdf / rvs / bin masses at N = 32 and a fit, single thread.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use probcraft::fourier::{bins, eval, fit, sample, Domain, Kind, Model, C64};
use probcraft::rng::Stream;
use std::hint::black_box;

fn model(domain: Domain, n: usize) -> Model {
    let mut s = Stream::new(1, 0);
    let a: Vec<C64> = (0..=n).map(|_| C64::new(s.normal(), s.normal())).collect();
    Model::new(domain, 1, &a, &[1.0], &[0.0]).unwrap()
}

fn evaluation(c: &mut Criterion) {
    let m = 100_000;
    let mut s = Stream::new(2, 0);
    let x: Vec<f64> = (0..m).map(|_| 2.0 * s.next_f64() - 1.0).collect();
    let mut g = c.benchmark_group("fourier_n32");
    g.throughput(Throughput::Elements(m as u64));
    for domain in [Domain::Interval, Domain::Real] {
        let md = model(domain, 32);
        for (name, kind) in [
            ("pdf", Kind::Pdf),
            ("logpdf", Kind::LogPdf),
            ("cdf", Kind::Cdf),
        ] {
            g.bench_function(format!("{name}_{}", domain.name()), |b| {
                b.iter(|| eval::evaluate(&md, kind, black_box(&x), 1, m, Some(1)).unwrap())
            });
        }
    }
    let md = model(Domain::Interval, 32);
    g.bench_function("rvs_interval", |b| {
        b.iter(|| sample::rvs(&md, m, black_box(7), Some(1)).unwrap())
    });
    let lo: Vec<f64> = x.iter().map(|v| v - 1e-3).collect();
    g.bench_function("bin_mass_interval", |b| {
        b.iter(|| bins::bin_mass(&md, black_box(&lo), &x, 1, m, Some(1)).unwrap())
    });
    g.finish();
}

fn fitting(c: &mut Criterion) {
    let mut s = Stream::new(3, 0);
    let y: Vec<f64> = (0..100_000)
        .map(|i| {
            if i % 2 == 0 {
                s.normal() - 2.0
            } else {
                0.5 * s.normal() + 1.0
            }
        })
        .collect();
    let opts = fit::FitOptions {
        n_coeffs: 10,
        domain: Domain::Real,
        penalty: None,
        optimizer: fit::Optimizer::Lbfgs,
        steps: 200,
        lr: 0.01,
        batch_size: None,
        seed: 0,
        compress: true,
        tol: 1e-9,
    };
    let mut g = c.benchmark_group("fourier_fit");
    g.sample_size(10);
    g.throughput(Throughput::Elements(y.len() as u64));
    g.bench_function("lbfgs_real_n10_1e5", |b| {
        b.iter(|| fit::fit(black_box(&y), None, 1, y.len(), &opts, Some(1)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, evaluation, fitting);
criterion_main!(benches);
