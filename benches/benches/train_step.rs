//! Training-step workloads (`WORKLOADS.md` P1..P6): one iteration is one
//! [`Trainer::train_step`](regkern_core::Trainer::train_step) on a fixed batch — copy the batch in,
//! zero gradients, forward, MSE, backward, Adam update — single thread.
//!
//! Criterion's time per iteration is the ms/step to compare with `baseline.md`. Benchmark ids are
//! the workload ids (`P1/mlp-train`, …). A new workload is one more [`bench_train_step`] call once
//! its model exists in regkern-core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use regkern_benches::{TrainSetup, first_batch, workloads};
use regkern_core::{Dataset, ModelConfig, Synthetic, Task};

/// Steps timed on one trainer before it is replaced by a fresh one (untimed).
///
/// Training on one fixed batch memorises it: P1's loss falls below 1e-10 within ~250 steps, the
/// gradients vanish and Adam's moment estimates decay into subnormal floats, which x86 handles in
/// microcode. Left running for criterion's tens of thousands of steps, a P1 step slowed (on the
/// dev machine) from ~120 µs to ~160 µs by step 1000, ~200 µs by step 20 000 and ~750 µs by step
/// 240 000: that measures the degenerate state, not the workload. Restarting every
/// `STEPS_PER_RUN` steps keeps every timed step free of subnormals, as in a real run whose batches
/// change.
const STEPS_PER_RUN: u64 = 200;

/// Benchmark `name`: training steps of `cfg` at `batch` samples per step with the workloads'
/// optimizer, on the first `batch` samples of `data`, from parameters initialised with seed 0.
///
/// The batch is the same for every step (the data pipeline is not part of a step); the trainer
/// is rebuilt every [`STEPS_PER_RUN`] steps, outside the timed region.
fn bench_train_step(c: &mut Criterion, name: &str, cfg: &ModelConfig, batch: usize, data: &dyn Dataset) {
    let (group, id) = name.split_once('/').expect("workload ids are <id>/<name>");
    let mut group = c.benchmark_group(group);
    bench_train_step_in(&mut group, id, cfg, batch, data);
    group.finish();
}

/// [`bench_train_step`] inside `group` (whose sampling settings it keeps), as `group/name`.
fn bench_train_step_in(
    c: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    cfg: &ModelConfig,
    batch: usize,
    data: &dyn Dataset,
) {
    let (x, y) = first_batch(data, batch);
    let mut setup = TrainSetup::new(cfg, batch, workloads::optimizer())
        .unwrap_or_else(|e| panic!("{name}: cannot plan the model: {e}"));
    c.bench_function(name, |bench| {
        bench.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let steps = left.min(STEPS_PER_RUN);
                let mut trainer =
                    setup.trainer(0).unwrap_or_else(|e| panic!("{name}: cannot build the trainer: {e}"));
                let start = Instant::now();
                for _ in 0..steps {
                    let info = trainer
                        .train_step(black_box(&x), black_box(&y))
                        .unwrap_or_else(|e| panic!("{name}: training step failed: {e}"));
                    black_box(info.loss);
                }
                timed += start.elapsed();
                left -= steps;
            }
            timed
        })
    });
}

fn p1_mlp_train(c: &mut Criterion) {
    let batch = workloads::P1_BATCH;
    let data = Synthetic::new(Task::Nlinear, 0, 0, batch);
    bench_train_step(c, "P1/mlp-train", &workloads::p1_mlp(), batch, &data);
}

fn p2_tfm_reg_train(c: &mut Criterion) {
    let batch = workloads::P2_BATCH;
    let data = Synthetic::new(Task::Seqsum, 0, 0, batch);
    bench_train_step(c, "P2/tfm-reg-train", &workloads::p2_transformer(), batch, &data);
}

fn p3_tfm_moe_train(c: &mut Criterion) {
    let batch = workloads::P2_BATCH;
    let data = Synthetic::new(Task::Seqsum, 0, 0, batch);
    bench_train_step(c, "P3/tfm-moe-train", &workloads::p3_transformer(), batch, &data);
}

fn p5_encdec_train(c: &mut Criterion) {
    let batch = workloads::P2_BATCH;
    let data = Synthetic::new(Task::Reverse, 0, 0, batch);
    bench_train_step(c, "P5/encdec-train", &workloads::p5_encdec(), batch, &data);
}

fn p6_tfm_mid_train(c: &mut Criterion) {
    let batch = workloads::P6_BATCH;
    let data = Synthetic::new(Task::Seqsum, 0, 0, batch)
        .with_seq_len(workloads::P6_SEQ)
        .unwrap_or_else(|e| panic!("P6: {e}"));
    // A step takes ~100 ms: ten samples, flat, keep the run to a minute or two.
    let mut c = c.benchmark_group("P6");
    c.sampling_mode(criterion::SamplingMode::Flat).sample_size(10);
    bench_train_step_in(&mut c, "tfm-mid-train", &workloads::p6_transformer(), batch, &data);
    c.finish();
}

criterion::criterion_group!(
    benches,
    p1_mlp_train,
    p2_tfm_reg_train,
    p3_tfm_moe_train,
    p5_encdec_train,
    p6_tfm_mid_train
);
criterion::criterion_main!(benches);
