//! K1 sgemm (`WORKLOADS.md`): `C = A·B`, square, f32, one thread, for every gemm kernel this CPU
//! supports, plus the `nt` (`A·Bᵀ`) and `tn` (`Aᵀ·B`) layouts at n = 256 and 1024 with the best
//! kernel.
//!
//! Throughput is `2·n³` elements per iteration, so criterion's `elem/s` read as FLOP/s.
//! Benchmark ids: `K1/sgemm/<kernel>/<n>`, `K1/sgemm-nt/<kernel>/<n>`, `K1/sgemm-tn/<kernel>/<n>`.

use std::hint::black_box;

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, measurement::WallTime};
use regkern_benches::{gemm_flops, random_floats};
use regkern_core::ops::gemm::{Gemm, Kernel, best_kernel};
use regkern_core::ops::gemm_with;

/// Square sizes of K1.
const SIZES: [usize; 3] = [64, 256, 1024];

/// Sizes at which the `nt` and `tn` layouts are measured.
const LAYOUT_SIZES: [usize; 2] = [256, 1024];

/// One benchmark of `gemm_with(kernel, C, A, B, g)` on fresh random operands sized for `g`.
fn bench_gemm(group: &mut BenchmarkGroup<'_, WallTime>, kernel: Kernel, g: Gemm) {
    // Contiguous operands: A holds m·k floats and B k·n, whatever the layout.
    let a = random_floats(g.m * g.k, 1);
    let b = random_floats(g.k * g.n, 2);
    let mut c = vec![0.0f32; g.m * g.n];
    let flops = gemm_flops(g.m, g.n, g.k);
    // A 1024³ gemm takes tens of ms (more on the portable kernel): criterion's default linear
    // sampling would need thousands of iterations per sample set, so sample it flat, 10 times.
    if flops >= gemm_flops(512, 512, 512) {
        group.sampling_mode(SamplingMode::Flat).sample_size(10);
    } else {
        group.sampling_mode(SamplingMode::Auto).sample_size(100);
    }
    group.throughput(Throughput::Elements(flops));
    group.bench_function(BenchmarkId::new(kernel.name(), g.n), |bench| {
        bench.iter(|| gemm_with(kernel, black_box(&mut c), black_box(&a), black_box(&b), g))
    });
}

fn k1_square(c: &mut Criterion) {
    let mut group = c.benchmark_group("K1/sgemm");
    for kernel in Kernel::ALL.into_iter().filter(|k| k.is_supported()) {
        for n in SIZES {
            bench_gemm(&mut group, kernel, Gemm::nn(n, n, n));
        }
    }
    group.finish();
}

fn k1_layouts(c: &mut Criterion) {
    let kernel = best_kernel();
    for (name, layout) in [("nt", Gemm::nt as fn(usize, usize, usize) -> Gemm), ("tn", Gemm::tn)] {
        let mut group = c.benchmark_group(format!("K1/sgemm-{name}"));
        for n in LAYOUT_SIZES {
            bench_gemm(&mut group, kernel, layout(n, n, n));
        }
        group.finish();
    }
}

criterion::criterion_group!(benches, k1_square, k1_layouts);
criterion::criterion_main!(benches);
