//! (b) Train a tiny transformer — E 16, F 32, 1 layer, 4 heads sharing 2 kv groups (GQA),
//! `max_seq_len` 8 — with Adam on `seqsum` over 8 positions: batch 4, 100 steps (2 epochs of 200).
//!
//! The data is core's `seqsum` task at 8 positions (`Synthetic::with_seq_len`): x ~ U(−1, 1),
//! y = Σx / √8.

use regkern_core::{
    DataLoader, Memory, Mode, Model, ModelConfig, Net, Optimizer, Schedule, Synthetic, Task, TrainConfig,
    Trainer, TransformerConfig, sizing,
};

use crate::{Failure, Line, LossLog, Platform, fnv1a, portable, report_arena};

/// Positions per sequence.
pub const SEQ: usize = 8;
/// Sequences per step.
pub const BATCH: usize = 4;
/// Training sequences (50 steps per epoch).
pub const TRAIN: usize = 200;
/// Validation sequences.
pub const VAL: usize = 64;
/// Epochs: 2 × 50 = 100 steps.
pub const EPOCHS: usize = 2;
/// Seed of the data, the initial parameters and the shuffles.
pub const SEED: u64 = 13;
/// Adam's learning rate.
pub const LR: f32 = 3e-3;

/// What the model is planned for.
pub const MODE: Mode = Mode::Training { max_batch: BATCH, optimizer: Optimizer::adam(LR) };

/// Floats of the static arena, at compile time (`regkern_core::sizing`).
pub const ARENA_FLOATS: usize = sizing::transformer_floats(&CONFIG, MODE, SEQ, MEMORY);

/// A lean training plan: backward recomputes the attention probabilities (the same bits).
pub const MEMORY: Memory = Memory::Lean;

/// The model: [`crate::TINY_TRANSFORMER`] (E 16, F 32, 1 layer, H 4, G 2, GELU) over [`SEQ`]
/// positions, with a mean-pooled regression head.
pub const CONFIG: TransformerConfig = TransformerConfig { max_seq_len: SEQ, ..crate::TINY_TRANSFORMER };

/// The model's config ([`CONFIG`]).
pub fn config() -> TransformerConfig {
    CONFIG
}

/// Train and print: every step's loss, 10-step means, the validation loss and a checksum.
pub fn run(p: &mut impl Platform, arena: &mut [f32]) -> Result<(), Failure> {
    let mut trainer = trainer(p, arena)?;
    portable(trainer.net());
    trainer.net().init_params(SEED);
    let (train, val) = Synthetic::split(Task::Seqsum, SEED, TRAIN, VAL);
    let (train, val) = (train.with_seq_len(SEQ)?, val.with_seq_len(SEQ)?);
    let mut order = [0u32; TRAIN];
    let mut loader = DataLoader::new(&mut order, BATCH, true, SEED)?;
    let mut log = LossLog::new(p);
    log.p.step_start();
    let summary = trainer.fit(&train, None, &mut loader, &mut log)?;
    let halved = log.check_halved();
    Line::new("steps").dec(summary.steps).emit(p);
    Line::new("train_loss").f32(summary.final_train_loss).emit(p);
    Line::new("val_loss").f32(trainer.evaluate(&val)?).emit(p);
    Line::new("checksum").hex(fnv1a(trainer.net_ref().params())).emit(p);
    halved
}

/// The planned model, bound to `arena`, in a trainer. Not inlined: the `Model` and `Net` it moves
/// along the way stay in its own frame, which is gone by the time the parameters are initialised
/// and training runs.
#[inline(never)]
fn trainer<'a>(p: &mut impl Platform, arena: &'a mut [f32]) -> Result<Trainer<'a>, Failure> {
    let model = Model::plan_with(&ModelConfig::Transformer(CONFIG), MODE, SEQ, MEMORY)?;
    report_arena(p, "seqsum", &model, arena.len());
    let net = Net::new(model, arena)?;
    let schedule = TrainConfig { epochs: EPOCHS, schedule: Schedule::Constant, clip_grad_norm: None };
    Ok(Trainer::new(net, Optimizer::adam(LR), schedule)?)
}
