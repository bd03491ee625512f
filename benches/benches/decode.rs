//! P4 tfm-ar-decode (`WORKLOADS.md`): autoregressive E 64, F 128, 2 layers, H 8, G 4,
//! max_seq_len 128, batch 1; prompt 16, generate 112.
//!
//! - `P4/generate/kv-cache-f32` and `P4/generate/no-cache`: one whole generation per iteration;
//!   throughput is 112 elements (tokens), so criterion's elem/s is tokens/s and the time per token
//!   is the iteration time / 112.
//! - `P4/step/kv-cache-f32/<L>`: one cached decoding step whose new token sits at position L − 1
//!   (attending over L positions), for L = 16, 64, 128: the per-token cost at that context.
//! - `P4/step/no-cache/<L>`: the same token without a cache: the whole context of L values re-run.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use regkern_benches::workloads;
use regkern_core::layers::KvDtype;
use regkern_core::models::{Context, Generate};
use regkern_core::{Mode, Model, Net};

const PROMPT: usize = 16;
const STEPS: usize = 112;

fn inference_arena(cache: Option<KvDtype>) -> (Model, Vec<f32>) {
    let model =
        Model::plan(&workloads::p4_transformer(cache), Mode::Inference { max_batch: 1 }).expect("P4 plans");
    let arena = vec![0.0f32; model.report().total_floats()];
    (model, arena)
}

fn prompt() -> Vec<f32> {
    (0..PROMPT).map(|t| (0.3 * t as f32).sin()).collect()
}

fn p4_generate(c: &mut Criterion) {
    let mut group = c.benchmark_group("P4/generate");
    group.throughput(Throughput::Elements(STEPS as u64));
    for (name, use_cache) in [("kv-cache-f32", true), ("no-cache", false)] {
        let (model, mut arena) = inference_arena(Some(KvDtype::F32));
        let mut net = Net::new(model, &mut arena).expect("arena fits");
        net.init_params(0);
        let (prompt, mut out) = (prompt(), vec![0.0f32; STEPS]);
        let g = Generate { steps: STEPS, context: Context::Expanding, use_cache };
        group.bench_function(name, |b| {
            b.iter(|| net.generate(black_box(&prompt), PROMPT, &mut out, g).expect("P4 generates"))
        });
    }
    group.finish();
}

fn p4_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("P4/step");
    let (model, mut arena) = inference_arena(Some(KvDtype::F32));
    let mut net = Net::new(model, &mut arena).expect("arena fits");
    net.init_params(0);
    let values: Vec<f32> = (0..128).map(|t| (0.3 * t as f32).sin()).collect();
    for context in [16usize, 64, 128] {
        {
            let mut dec = net.decoder(1).expect("P4 has a KV cache");
            let mut out = [0.0f32];
            for v in &values[..context - 1] {
                dec.push(std::slice::from_ref(v), &mut out).expect("fits");
            }
            group.bench_function(BenchmarkId::new("kv-cache-f32", context), |b| {
                b.iter(|| {
                    dec.truncate(context - 1).expect("rewinds");
                    dec.push(black_box(&values[context - 1..context]), &mut out).expect("fits")
                })
            });
        }
        // Without a cache, the token at position L − 1 costs a forward pass over all L values.
        let mut out = vec![0.0f32; context];
        net.set_seq_len(context).expect("within max_seq_len");
        group.bench_function(BenchmarkId::new("no-cache", context), |b| {
            b.iter(|| net.predict(black_box(&values[..context]), &mut out).expect("predicts"))
        });
    }
    group.finish();
}

criterion::criterion_group!(benches, p4_generate, p4_step);
criterion::criterion_main!(benches);
