//! (a) Train an MLP 8 → 16 → 8 → 1 (relu) with Adam on the `nlinear` task: 200 steps of batch 16
//! (10 epochs of 320 samples) through `Trainer::fit` and a seeded `DataLoader`.
//!
//! Prints every step's loss, 10-step means, the validation loss and an FNV-1a checksum of the
//! final parameters (`checksum`). The final parameters are also what [`crate::mlp_infer`] embeds
//! (`host export-weights` writes them), so its `weights_checksum` equals this `checksum` when
//! host and firmware agree bit for bit.

use regkern_core::{
    Activation, DataLoader, MlpConfig, Mode, Model, ModelConfig, Net, Optimizer, Region, Schedule, Synthetic,
    Task, TrainConfig, Trainer, sizing,
};

use crate::{Failure, LossLog, Platform, fnv1a, portable, report_arena};

/// Samples per step.
pub const BATCH: usize = 16;
/// Training samples (20 steps per epoch).
pub const TRAIN: usize = 320;
/// Validation samples.
pub const VAL: usize = 64;
/// Epochs: 10 × 20 = 200 steps.
pub const EPOCHS: usize = 10;
/// Seed of the task, the initial parameters and the shuffles.
pub const SEED: u64 = 13;
/// Adam's learning rate.
pub const LR: f32 = 1e-2;

/// Input features, hidden widths, outputs.
pub const N_IN: usize = 8;
/// Widths of the hidden layers.
pub const HIDDEN: [usize; 2] = [16, 8];
/// Outputs.
pub const N_OUT: usize = 1;
/// What the model is planned for.
pub const MODE: Mode = Mode::Training { max_batch: BATCH, optimizer: Optimizer::adam(LR) };

/// Floats of the static arena this scenario needs, computed at compile time from the config
/// (`regkern_core::sizing`, which a core test holds equal to `Model::plan`'s report).
pub const ARENA_FLOATS: usize = sizing::mlp_floats(N_IN, &HIDDEN, N_OUT, MODE);

/// The model: 8 → 16 → 8 → 1, relu between hidden layers.
pub fn config() -> ModelConfig {
    // `latent_dims` is a `heapless::Vec`, which core does not re-export: fill it through its
    // methods so the firmware needs no dependency beyond core and cortex-m.
    let mut cfg =
        MlpConfig { n_in: N_IN, latent_dims: Default::default(), n_out: N_OUT, act: Activation::Relu };
    for d in HIDDEN {
        // Two widths fit: MAX_HIDDEN is 16.
        let _ = cfg.latent_dims.push(d);
    }
    ModelConfig::Mlp(cfg)
}

/// Train and print; on success the trained parameters are the first `Ok(n)` floats of `arena`
/// (the params region comes first in every arena).
pub fn run(p: &mut impl Platform, arena: &mut [f32]) -> Result<usize, Failure> {
    let model = Model::plan(&config(), MODE)?;
    report_arena(p, "mlp", &model, arena.len());
    let params = model.report().floats(Region::Params);
    let mut net = Net::new(model, arena)?;
    portable(&mut net);
    net.init_params(SEED);
    let (train, val) = Synthetic::split(Task::Nlinear, SEED, TRAIN, VAL);
    let mut order = [0u32; TRAIN];
    let mut loader = DataLoader::new(&mut order, BATCH, true, SEED)?;
    let schedule = TrainConfig { epochs: EPOCHS, schedule: Schedule::Constant, clip_grad_norm: None };
    let mut trainer = Trainer::new(net, Optimizer::adam(LR), schedule)?;
    let mut log = LossLog::new(p);
    log.p.step_start();
    let summary = trainer.fit(&train, None, &mut loader, &mut log)?;
    let halved = log.check_halved();
    crate::Line::new("steps").dec(summary.steps).emit(p);
    crate::Line::new("train_loss").f32(summary.final_train_loss).emit(p);
    crate::Line::new("val_loss").f32(trainer.evaluate(&val)?).emit(p);
    crate::Line::new("checksum").hex(fnv1a(trainer.net_ref().params())).emit(p);
    halved?;
    Ok(params)
}
