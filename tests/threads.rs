//! `--threads N` changes speed, never bits: training steps of the MLP, the transformer, a MoE
//! transformer and an encoder-decoder, autoregressive generation (cached and not) and greedy
//! encoder-decoder decoding give the same bits on 1, 2 and 3 threads.
//!
//! Its own process with one test: the parallel-for is process-wide, and this test switches it.
//! The shapes are large enough that their products really split (a counting parallel-for checks
//! that they do).

use std::sync::atomic::{AtomicUsize, Ordering};

use regkern_core::layers::KvDtype;
use regkern_core::models::{Context, Generate};
use regkern_core::parallel::{Installed, Parallel, install};
use regkern_core::{
    Activation, Capacity, EncoderDecoderConfig, Mode, Model, ModelConfig, MoeConfig, Net, Optimizer,
    Schedule, TrainConfig, Trainer, TransformerConfig, Xoshiro256,
};
use regkern_tests::mlp;

/// A parallel-for on fresh scoped threads, counting the tasks it ran: proof that work was split.
struct Scoped(AtomicUsize);

impl Parallel for Scoped {
    fn threads(&self) -> usize {
        3
    }
    fn run(&self, tasks: &mut [&mut (dyn FnMut() + Send)]) {
        self.0.fetch_add(tasks.len(), Ordering::Relaxed);
        std::thread::scope(|s| {
            for t in tasks.iter_mut() {
                s.spawn(t);
            }
        });
    }
}

static SCOPED: Scoped = Scoped(AtomicUsize::new(0));
static SCOPED_REG: Installed = Installed(&SCOPED);

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0.0; len];
    Xoshiro256::seed_from(seed).fill_uniform(&mut v, -1.0, 1.0);
    v
}

/// Parameters and losses after three Adam steps of `cfg` on one random batch of `batch` samples.
fn train(cfg: &ModelConfig, batch: usize) -> Vec<u32> {
    train_with(cfg, batch, Optimizer::adam(1e-3))
}

/// As [`train`], with `optimizer`.
fn train_with(cfg: &ModelConfig, batch: usize, optimizer: Optimizer) -> Vec<u32> {
    let model = Model::plan(cfg, Mode::Training { max_batch: batch, optimizer }).unwrap();
    let (x, y) = (random(batch * model.in_len(), 1), random(batch * model.out_len(), 2));
    let mut arena = vec![0.0; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).unwrap();
    net.init_params(0);
    let config = TrainConfig { epochs: 1, schedule: Schedule::Constant, clip_grad_norm: Some(1.0) };
    let mut trainer = Trainer::new(net, optimizer, config).unwrap();
    let mut bits: Vec<u32> = (0..3).map(|_| trainer.train_step(&x, &y).unwrap().loss.to_bits()).collect();
    bits.extend(trainer.net().params().iter().map(|p| p.to_bits()));
    bits
}

/// Inference of `cfg` from seed-0 weights: `run` gets the net and returns the outputs.
fn infer(cfg: &ModelConfig, batch: usize, run: impl FnOnce(&mut Net<'_>) -> Vec<f32>) -> Vec<u32> {
    let model = Model::plan(cfg, Mode::Inference { max_batch: batch }).unwrap();
    let mut arena = vec![0.0; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).unwrap();
    net.init_params(0);
    run(&mut net).iter().map(|v| v.to_bits()).collect()
}

fn transformer() -> TransformerConfig {
    TransformerConfig {
        embed_dim: 96,
        ffn_dim: 384,
        num_layers: 2,
        num_heads: 4,
        num_groups: 2,
        // 16 sequences of 128: attention is large enough to split by sequence too.
        max_seq_len: 128,
        ..TransformerConfig::default()
    }
}

/// Every workload of the test, each giving the bits it computed.
fn workloads() -> Vec<(&'static str, Vec<u32>)> {
    let mut out = Vec::new();
    out.push(("mlp", train(&mlp(64, &[256, 256], 8, Activation::Gelu), 256)));
    // ~300k parameters: their updates (and the gradient zeroing) split too, for every optimizer
    // and each layout of its state.
    let wide = mlp(64, &[512, 512], 8, Activation::Relu);
    out.push(("wide mlp, adam", train(&wide, 64)));
    let sgd = Optimizer::sgd(1e-2).with_momentum(0.9).unwrap();
    out.push(("wide mlp, sgd", train_with(&wide, 64, sgd)));
    let Some(Optimizer::RmsProp(rmsprop)) = Optimizer::rmsprop(1e-3).with_momentum(0.5) else {
        unreachable!()
    };
    let rmsprop = Optimizer::RmsProp(regkern_core::optim::RmsProp { centered: true, ..rmsprop });
    out.push(("wide mlp, rmsprop", train_with(&wide, 64, rmsprop)));
    out.push(("transformer", train(&ModelConfig::Transformer(transformer()), 16)));
    let moe = MoeConfig { num_experts: 4, top_k: 2, capacity: Capacity::Factor(1.0), alpha: 0.01 };
    out.push((
        "moe",
        train(&ModelConfig::Transformer(TransformerConfig { moe: Some(moe), ..transformer() }), 16),
    ));
    let encdec = ModelConfig::EncoderDecoder(EncoderDecoderConfig::from_stack(&transformer(), 2, 2));
    out.push(("encdec", train(&encdec, 16)));
    let ar = TransformerConfig { autoregressive: true, kv_cache: Some(KvDtype::F32), ..transformer() };
    for use_cache in [true, false] {
        let name = if use_cache { "generate (cache)" } else { "generate (no cache)" };
        out.push((
            name,
            infer(&ModelConfig::Transformer(ar), 8, |net| {
                let (prompt_len, steps) = (40, 24);
                let mut y = vec![0.0; 8 * steps];
                let g = Generate { steps, context: Context::Expanding, use_cache };
                net.generate(&random(8 * prompt_len, 3), prompt_len, &mut y, g).unwrap();
                y
            }),
        ));
    }
    out.push((
        "greedy encoder-decoder",
        infer(&encdec, 16, |net| {
            let mut y = vec![0.0; 16 * net.out_len()];
            let x = random(16 * net.in_len(), 4);
            net.predict(&x, &mut y).unwrap();
            y
        }),
    ));
    out
}

#[test]
fn every_thread_count_gives_the_same_bits() {
    install(None);
    let one = workloads();
    for threads in [2, 3] {
        regkern_threads::set_threads(threads).unwrap();
        assert_eq!(regkern_core::parallel::threads(), threads);
        for ((name, want), (_, got)) in one.iter().zip(workloads()) {
            assert!(*want == got, "{name}: {threads} threads changed the result");
        }
    }
    install(Some(&SCOPED_REG));
    for ((name, want), (_, got)) in one.iter().zip(workloads()) {
        assert!(*want == got, "{name}: scoped threads changed the result");
    }
    install(None);
    assert!(SCOPED.0.load(Ordering::Relaxed) > 100, "too few products were split to test anything");
}
