//! Zero heap allocations inside training steps, epochs and inference.
//!
//! A counting global allocator wraps the system allocator. Setup (the arena `Vec`, the loader's
//! index table) may allocate; everything after must not. This file runs without the test
//! harness (`harness = false`) so that no other thread allocates while we count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use regkern_core::EncoderDecoderConfig;
use regkern_core::layers::KvDtype;
use regkern_core::{
    Activation, AttentionType, Capacity, DataLoader, LinearConfig, Mode, Model, ModelConfig, MoeConfig, Net,
    Optimizer, Schedule, Synthetic, Task, TrainConfig, Trainer, TransformerConfig,
};
use regkern_tests::mlp;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made while running `f`.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.load(Ordering::SeqCst);
    f();
    ALLOCS.load(Ordering::SeqCst) - before
}

fn check(label: &str, cfg: ModelConfig, task: Task, optimizer: Optimizer) {
    let model = Model::plan(&cfg, Mode::Training { max_batch: 64, optimizer }).unwrap();
    let mut arena = vec![0.0; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).unwrap();
    net.set_seq_len(task.seq_len()).unwrap();
    if task.seq2seq() {
        net.set_target_len(task.seq_len()).unwrap();
    }
    net.init_params(0);
    let (train, val) = Synthetic::split(task, 0, 256, 64);
    let mut order = vec![0u32; 256];
    let mut loader = DataLoader::new(&mut order, 64, true, 0).unwrap();
    let config = TrainConfig {
        epochs: 3,
        schedule: Schedule::WarmupCosine { warmup_steps: 4, min_lr: 0.0 },
        clip_grad_norm: Some(1.0),
    };
    let mut trainer = Trainer::new(net, optimizer, config).unwrap();
    let (x, y) = (vec![0.5f32; 64 * task.in_len()], vec![0.1f32; 64 * task.out_len()]);
    let mut out = vec![0.0f32; 64 * task.out_len()];
    let n = allocations(|| {
        for _ in 0..5 {
            trainer.train_step(&x, &y).unwrap();
        }
        trainer.fit(&train, Some(&val), &mut loader, &mut ()).unwrap();
        trainer.evaluate(&val).unwrap();
        trainer.net().predict(&x, &mut out).unwrap();
    });
    assert_eq!(n, 0, "{label} with {}: {n} heap allocations during training", optimizer.name());
    println!(
        "{label} with {}: 0 allocations in 5 steps, 3 epochs, evaluation and prediction",
        optimizer.name()
    );
}

/// Greedy generation, with and without the KV cache, expanding and sliding: no allocation.
fn check_generation() {
    use regkern_core::models::{Context, Generate};
    for dtype in [KvDtype::F32, KvDtype::F16, KvDtype::Bf16] {
        let cfg =
            TransformerConfig { autoregressive: true, kv_cache: Some(dtype), ..TransformerConfig::default() };
        let model = Model::plan(&ModelConfig::Transformer(cfg), Mode::Inference { max_batch: 2 }).unwrap();
        let mut arena = vec![0.0; model.report().total_floats()];
        let mut net = Net::new(model, &mut arena).unwrap();
        net.init_params(1);
        let prompt = vec![0.25f32; 2 * 16];
        let mut out = vec![0.0f32; 2 * 40];
        let n = allocations(|| {
            for use_cache in [true, false] {
                for context in [Context::Expanding, Context::Sliding { window: 24 }] {
                    net.generate(&prompt, 16, &mut out, Generate { steps: 40, context, use_cache }).unwrap();
                }
            }
        });
        assert_eq!(n, 0, "generation with a {} cache: {n} heap allocations", dtype.name());
        println!("generation ({} cache, and uncached; expanding and sliding): 0 allocations", dtype.name());
    }
}

fn main() {
    check(
        "linear",
        ModelConfig::Linear(LinearConfig { n_in: 8, n_out: 1 }),
        Task::Linear,
        Optimizer::sgd(0.01),
    );
    for (act, opt) in [
        (Activation::Relu, Optimizer::adam(1e-3)),
        (Activation::Tanh, Optimizer::rmsprop(1e-3)),
        (Activation::Gelu, Optimizer::sgd(1e-2).with_momentum(0.9).unwrap()),
    ] {
        check(&format!("mlp {}", act.name()), mlp(8, &[128, 64, 32], 1, act), Task::Nlinear, opt);
    }
    for attention in [AttentionType::Mha, AttentionType::Mqa, AttentionType::Gqa] {
        let cfg = TransformerConfig { attention, max_seq_len: 40, ..TransformerConfig::default() };
        let label = format!("transformer {}", attention.name());
        check(&label, ModelConfig::Transformer(cfg), Task::Seqsum, Optimizer::adam(1e-3));
    }
    let moe = MoeConfig { num_experts: 4, top_k: 2, capacity: Capacity::Factor(1.0), alpha: 0.01 };
    let cfg = TransformerConfig { moe: Some(moe), max_seq_len: 40, ..TransformerConfig::default() };
    check("transformer gqa moe", ModelConfig::Transformer(cfg), Task::Seqsum, Optimizer::adam(1e-3));
    for (kv_cache, moe) in [(Some(KvDtype::F32), None), (None, None), (Some(KvDtype::F16), Some(moe))] {
        let cfg = EncoderDecoderConfig { max_seq_len: 40, kv_cache, moe, ..Default::default() };
        let label = format!("encoder-decoder (cache {kv_cache:?}, moe {})", moe.is_some());
        check(&label, ModelConfig::EncoderDecoder(cfg), Task::Reverse, Optimizer::adam(1e-3));
    }
    check_generation();
    // The counter itself works: a Vec allocates.
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8; 10]))) > 0);
}
