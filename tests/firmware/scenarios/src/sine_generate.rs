//! (c) Train an autoregressive tiny transformer (E 16, F 32, 1 layer, H 4, G 2, 16 positions) on
//! the `sine` task briefly, then generate greedily from 8-value prompts: through an f32 KV cache,
//! without a cache (recomputing the context each step) and through an f16 cache.
//!
//! Cached and uncached generation must agree within [`F32_CACHE_TOL`] (the scenario fails
//! otherwise); the f16 cache's largest difference is printed. The arena is carved three times:
//! for training, then for inference with each cache type, with the trained parameters kept in
//! its first floats in between.

use regkern_core::data::SINE_LEN;
use regkern_core::layers::KvDtype;
use regkern_core::models::{Context, Generate};
use regkern_core::{
    DataLoader, Dataset, Memory, Mode, Model, ModelConfig, Net, Optimizer, Region, Schedule, Synthetic, Task,
    TrainConfig, Trainer, TransformerConfig, sizing,
};

use crate::{Failure, Line, LossLog, Platform, fnv1a, max_abs_diff, portable, report_arena};

/// Positions per training sequence (the first 16 of the task's 32).
pub const SEQ: usize = 16;
/// Sequences per training step.
pub const BATCH: usize = 4;
/// Training sequences (20 steps per epoch).
pub const TRAIN: usize = 80;
/// Epochs: 4 × 20 = 80 steps.
pub const EPOCHS: usize = 4;
/// Seed of the data, the initial parameters and the shuffles.
pub const SEED: u64 = 13;
/// Adam's learning rate.
pub const LR: f32 = 1e-2;
/// Sequences generated at once, values per prompt, values generated after each.
pub const GEN_N: usize = 2;
/// Values per prompt.
pub const PROMPT: usize = 8;
/// Values generated after each prompt (the last is predicted from 15 values: within `SEQ`).
pub const STEPS: usize = 8;
/// Largest |cached − uncached| accepted with an f32 cache.
pub const F32_CACHE_TOL: f32 = 1e-5;

/// What the model is trained for.
pub const MODE: Mode = Mode::Training { max_batch: BATCH, optimizer: Optimizer::adam(LR) };
/// A lean training plan: backward recomputes the attention probabilities (the same bits).
pub const MEMORY: Memory = Memory::Lean;
/// What it generates with.
pub const GEN_MODE: Mode = Mode::Inference { max_batch: GEN_N };

/// Floats of the static arena, at compile time (`regkern_core::sizing`): the saved parameters,
/// then the largest of the three plans.
pub const ARENA_FLOATS: usize = {
    let train = sizing::transformer_floats(&config(None), MODE, SEQ, MEMORY);
    let f32_cache = sizing::transformer_floats(&config(Some(KvDtype::F32)), GEN_MODE, SEQ, MEMORY);
    let f16_cache = sizing::transformer_floats(&config(Some(KvDtype::F16)), GEN_MODE, SEQ, MEMORY);
    let widest = if train > f32_cache { train } else { f32_cache };
    sizing::transformer_param_floats(&config(None)) + if widest > f16_cache { widest } else { f16_cache }
};

/// The model: autoregressive (causal, a prediction per position), GELU FFN.
pub const fn config(kv_cache: Option<KvDtype>) -> TransformerConfig {
    TransformerConfig { max_seq_len: SEQ, autoregressive: true, kv_cache, ..crate::TINY_TRANSFORMER }
}

/// The first [`SEQ`] positions of each `sine` sample: still the sine task (input x[0..T],
/// target x[1..T+1]), over a shorter wave.
struct Prefix<'d>(&'d Synthetic);

impl Dataset for Prefix<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn in_len(&self) -> usize {
        SEQ
    }

    fn out_len(&self) -> usize {
        SEQ
    }

    fn get(&self, i: usize, x: &mut [f32], y: &mut [f32]) {
        let (mut xs, mut ys) = ([0.0f32; SINE_LEN], [0.0f32; SINE_LEN]);
        self.0.get(i, &mut xs, &mut ys);
        x.copy_from_slice(&xs[..SEQ]);
        y.copy_from_slice(&ys[..SEQ]);
    }
}

/// Train, generate three ways, compare and print.
pub fn run(p: &mut impl Platform, arena: &mut [f32]) -> Result<(), Failure> {
    let optimizer = Optimizer::adam(LR);
    let train_model = Model::plan_with(&ModelConfig::Transformer(config(None)), MODE, SEQ, MEMORY)?;
    let n_params = train_model.report().floats(Region::Params);
    if n_params > arena.len() {
        return Err(regkern_core::Error::ArenaTooSmall { needed: n_params * 4, got: arena.len() * 4 }.into());
    }
    let (saved, arena) = arena.split_at_mut(n_params);
    report_arena(p, "sine_train", &train_model, arena.len());

    // Train.
    let mut net = Net::new(train_model, arena)?;
    portable(&mut net);
    net.init_params(SEED);
    let (task, val) = Synthetic::split(Task::Sine, SEED, TRAIN, GEN_N);
    let mut order = [0u32; TRAIN];
    let mut loader = DataLoader::new(&mut order, BATCH, true, SEED)?;
    let schedule = TrainConfig { epochs: EPOCHS, schedule: Schedule::Constant, clip_grad_norm: None };
    let mut trainer = Trainer::new(net, optimizer, schedule)?;
    let mut log = LossLog::new(p);
    log.p.step_start();
    trainer.fit(&Prefix(&task), None, &mut loader, &mut log)?;
    let halved = log.check_halved();
    saved.copy_from_slice(trainer.net_ref().params());
    drop(trainer);
    Line::new("checksum").hex(fnv1a(saved)).emit(p);

    // Prompts: the first values of the validation waves; the truth: their continuations.
    let (mut prompt, mut truth) = ([0.0f32; GEN_N * PROMPT], [0.0f32; GEN_N * STEPS]);
    for b in 0..GEN_N {
        let (mut x, mut y) = ([0.0f32; SEQ], [0.0f32; SEQ]);
        Prefix(&val).get(b, &mut x, &mut y);
        prompt[b * PROMPT..][..PROMPT].copy_from_slice(&x[..PROMPT]);
        // Step s predicts value PROMPT + s, which is the target at position PROMPT − 1 + s.
        truth[b * STEPS..][..STEPS].copy_from_slice(&y[PROMPT - 1..][..STEPS]);
    }

    let (mut cached, mut uncached, mut half) =
        ([0.0f32; GEN_N * STEPS], [0.0; GEN_N * STEPS], [0.0; GEN_N * STEPS]);
    for (dtype, label) in [(KvDtype::F32, "gen_f32"), (KvDtype::F16, "gen_f16")] {
        let model = Model::plan(&ModelConfig::Transformer(config(Some(dtype))), GEN_MODE)?;
        report_arena(p, label, &model, arena.len());
        let mut net = Net::new(model, arena)?;
        portable(&mut net);
        if net.params().len() != saved.len() {
            return Err(Failure::Check("inference_params_layout"));
        }
        net.params_mut().copy_from_slice(saved);
        let g = |use_cache| Generate { steps: STEPS, context: Context::Expanding, use_cache };
        if dtype == KvDtype::F32 {
            net.generate(&prompt, PROMPT, &mut uncached, g(false))?;
            net.generate(&prompt, PROMPT, &mut cached, g(true))?;
        } else {
            net.generate(&prompt, PROMPT, &mut half, g(true))?;
        }
    }
    for (label, values) in [("uncached", &uncached), ("cached_f32", &cached), ("cached_f16", &half)] {
        for (i, &v) in values.iter().enumerate() {
            Line::new("gen").word(label).dec((i / STEPS) as u64).dec((i % STEPS) as u64).f32(v).emit(p);
        }
    }
    let (d32, d16) = (max_abs_diff(&cached, &uncached), max_abs_diff(&half, &uncached));
    Line::new("gen_maxdiff f32").f32(d32).emit(p);
    Line::new("gen_maxdiff f16").f32(d16).emit(p);
    let mse = |v: &[f32]| v.iter().zip(&truth).map(|(a, t)| (a - t) * (a - t)).sum::<f32>() / v.len() as f32;
    Line::new("gen_mse uncached").f32(mse(&uncached)).emit(p);
    Line::new("gen_mse zero").f32(mse(&[0.0; GEN_N * STEPS])).emit(p);
    halved?;
    // NaN fails too.
    if d32 <= F32_CACHE_TOL { Ok(()) } else { Err(Failure::Check("f32_cache_disagrees")) }
}
