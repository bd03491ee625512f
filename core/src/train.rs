//! Training: one step is loss and gradients → non-finite guard → clipping → optimizer update.
//!
//! [`Trainer::step`] does one step on the batch already in the net's buffers (what the C ABI
//! drives); [`Trainer::fit`] runs epochs over a [`Dataset`] with a [`DataLoader`], validates after
//! each epoch and reports to an [`Observer`], which is how the host prints progress and logs.
//! A NaN or infinite loss or gradient stops training with `NonFinite { step }` *before* the
//! update, so the parameters are those of the last good step.

use core::ops::ControlFlow;

use crate::checkpoint;
use crate::data::{DataLoader, Dataset};
use crate::error::{Error, Result, ensure};
use crate::layers::moe::MoeStats;
use crate::models::Net;
use crate::ops::{scale, sum_sq_f64};
use crate::optim::Optimizer;
use crate::schedule::{Progress, Schedule};

/// How to train, beyond the model and the optimizer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Learning-rate schedule over the run.
    pub schedule: Schedule,
    /// Clip gradients to this global L2 norm (PyTorch `clip_grad_norm_`), if set.
    pub clip_grad_norm: Option<f32>,
}

impl TrainConfig {
    /// Check the fields.
    pub fn validate(&self) -> Result<()> {
        ensure(self.epochs > 0, "epochs", "must be at least 1")?;
        if let Some(c) = self.clip_grad_norm {
            ensure(c.is_finite() && c > 0.0, "clip_grad_norm", "must be a positive finite number")?;
        }
        self.schedule.validate()
    }
}

/// What one optimizer step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepInfo {
    /// 0-based epoch.
    pub epoch: usize,
    /// 0-based optimizer step.
    pub step: u64,
    /// Samples in the batch.
    pub batch: usize,
    /// Training loss of the batch before the update: MSE plus, for MoE models, the
    /// load-balancing loss (`moe.aux`).
    pub loss: f32,
    /// Learning rate used.
    pub lr: f32,
    /// Global L2 norm of the gradient, before clipping, when the step measured it: when it clips
    /// (`clip_grad_norm`), or when asked to ([`Trainer::measure_grad_norm`],
    /// [`Observer::wants_grad_norm`]). It is summed in f64, once per parameter, which a
    /// microcontroller's single-precision FPU does in software: a step that needs it not, skips it.
    pub grad_norm: Option<f32>,
    /// MoE routing of the step's forward pass (summed over blocks), for MoE models.
    pub moe: Option<MoeStats>,
}

/// What one epoch did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochInfo {
    /// 0-based epoch.
    pub epoch: usize,
    /// Epochs in the run.
    pub epochs: usize,
    /// Optimizer steps so far.
    pub steps: u64,
    /// Mean training MSE over the epoch's samples (MoE's load-balancing loss, which is optimised
    /// too, is reported in `moe`), comparable with `val_loss`.
    pub train_loss: f32,
    /// Validation loss after the epoch, when there is a validation set.
    pub val_loss: Option<f32>,
    /// Learning rate of the epoch's last step.
    pub lr: f32,
    /// MoE models: the fraction of assignments dropped for capacity over the epoch's steps, and
    /// the mean load-balancing loss per step (summed over blocks).
    pub moe: Option<(f32, f32)>,
}

/// Receives progress from [`Trainer::fit`]. Every method has a default that does nothing.
pub trait Observer {
    /// After each optimizer step.
    fn on_step(&mut self, _info: &StepInfo) {}

    /// True to have every step of [`Trainer::fit`] measure the gradient norm
    /// ([`StepInfo::grad_norm`]) even when it does not clip.
    fn wants_grad_norm(&self) -> bool {
        false
    }

    /// After each epoch's validation, with the trainer (to predict, or save a checkpoint).
    /// Return `ControlFlow::Break(())` to stop early.
    fn on_epoch(&mut self, _info: &EpochInfo, _trainer: &mut Trainer<'_>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// An observer that ignores everything.
impl Observer for () {}

/// The outcome of [`Trainer::fit`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Epochs completed.
    pub epochs: usize,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Mean training MSE of the last epoch (as [`EpochInfo::train_loss`]).
    pub final_train_loss: f32,
    /// Validation loss after the last epoch.
    pub final_val_loss: Option<f32>,
    /// Lowest validation loss seen, and after which epoch (0-based).
    pub best_val: Option<(f32, usize)>,
    /// MoE models: the last epoch's drop rate and mean load-balancing loss (as [`EpochInfo::moe`]).
    pub final_moe: Option<(f32, f32)>,
}

/// A net, an optimizer and the step and epoch counters: everything that changes during training.
#[derive(Debug)]
pub struct Trainer<'a> {
    net: Net<'a>,
    optimizer: Optimizer,
    config: TrainConfig,
    steps: u64,
    /// Epochs [`Trainer::fit`] has completed (restored by [`Trainer::load_checkpoint`]).
    epochs_done: usize,
    /// Measure the gradient norm at every step, clipping or not.
    grad_norm: bool,
}

impl<'a> Trainer<'a> {
    /// Check that `net` was planned for training with room for `optimizer`'s state.
    pub fn new(net: Net<'a>, optimizer: Optimizer, config: TrainConfig) -> Result<Self> {
        optimizer.validate()?;
        config.validate()?;
        let planned = match net.model().mode() {
            crate::models::Mode::Training { optimizer: o, .. } => o.state_copies(),
            crate::models::Mode::Inference { .. } => return Err(Error::NotTrainable),
        };
        let needed = optimizer.state_copies();
        if needed > planned {
            return Err(Error::OptimizerMismatch { needed, planned });
        }
        Ok(Trainer { net, optimizer, config, steps: 0, epochs_done: 0, grad_norm: false })
    }

    /// Replace the epochs, schedule and clipping (e.g. between runs, or from the C ABI).
    pub fn set_config(&mut self, config: TrainConfig) -> Result<()> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Measure the gradient norm at every step from now on ([`StepInfo::grad_norm`]), or only
    /// when clipping needs it (the default).
    pub fn measure_grad_norm(&mut self, on: bool) {
        self.grad_norm = on;
    }

    /// The net being trained, for reading.
    pub fn net_ref(&self) -> &Net<'a> {
        &self.net
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    /// The net being trained.
    pub fn net(&mut self) -> &mut Net<'a> {
        &mut self.net
    }

    /// Give the net back (trained).
    pub fn into_net(self) -> Net<'a> {
        self.net
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Epochs completed by [`Trainer::fit`] so far.
    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }

    /// Bytes [`Trainer::save_checkpoint`] needs (an upper bound; see [`checkpoint::saved_len`]).
    pub fn checkpoint_len(&self) -> Result<usize> {
        checkpoint::saved_len(self.net.model(), Some(&self.optimizer))
    }

    /// Write a training checkpoint — parameters, optimizer state, epochs and steps done — into
    /// `out`; returns its length. Resuming from it with [`Trainer::load_checkpoint`] continues
    /// the run exactly as if it had not stopped.
    pub fn save_checkpoint(&mut self, out: &mut [u8]) -> Result<usize> {
        let progress = checkpoint::Progress { epochs: self.epochs_done as u64, steps: self.steps };
        let (model, bufs) = self.net.model_and_buffers();
        let copies = self.optimizer.state_copies();
        let state = checkpoint::TrainingState {
            optimizer: &self.optimizer,
            opt_state: &bufs.opt_state[..bufs.params.len() * copies],
            progress,
        };
        checkpoint::save(model, bufs.params, Some(state), out)
    }

    /// Restore a training checkpoint written by [`Trainer::save_checkpoint`] with the same model
    /// and optimizer: parameters, optimizer state, steps and epochs done. On error nothing
    /// changes.
    pub fn load_checkpoint(&mut self, bytes: &[u8]) -> Result<checkpoint::Progress> {
        let (model, bufs) = self.net.model_and_buffers();
        let n = bufs.params.len() * self.optimizer.state_copies();
        let header =
            checkpoint::load(bytes, model, bufs.params, Some((&self.optimizer, &mut bufs.opt_state[..n])))?;
        let progress = header
            .progress()
            .ok_or(Error::BadCheckpoint { reason: "no training progress in the metadata", offset: 8 })?;
        self.steps = progress.steps;
        self.epochs_done = usize::try_from(progress.epochs).map_err(|_| Error::SizeOverflow)?;
        Ok(progress)
    }

    /// One optimizer step on the `n` samples already in the net's batch buffers, at `lr`.
    /// On `Err(NonFinite)` the parameters are unchanged.
    pub fn step(&mut self, n: usize, lr: f32) -> Result<StepInfo> {
        self.step_measuring(n, lr, self.grad_norm)
    }

    /// [`Trainer::step`], measuring the gradient norm when clipping or `measure`.
    fn step_measuring(&mut self, n: usize, lr: f32, measure: bool) -> Result<StepInfo> {
        let step = self.steps;
        let loss = self.net.loss_and_grads_in_place(n)?;
        if !loss.is_finite() {
            return Err(Error::NonFinite { step, what: "loss" });
        }
        let clip = self.config.clip_grad_norm;
        let bufs = self.net.buffers();
        let norm = (clip.is_some() || measure).then(|| libm::sqrt(sum_sq_f64(bufs.grads)));
        // Without the norm, a comparison per gradient (no arithmetic) finds a NaN or infinity.
        let finite = norm.map_or_else(|| bufs.grads.iter().all(|g| g.is_finite()), f64::is_finite);
        if !finite {
            return Err(Error::NonFinite { step, what: "gradient" });
        }
        if let (Some(max), Some(norm)) = (clip, norm) {
            // reference: torch.nn.utils.clip_grad_norm_ — coef = max / (norm + 1e-6), applied if < 1
            let coef = f64::from(max) / (norm + 1e-6);
            if coef < 1.0 {
                scale(bufs.grads, coef as f32);
            }
        }
        self.optimizer.step(bufs.params, bufs.grads, bufs.opt_state, lr, step + 1);
        self.steps += 1;
        let moe = self.net.moe_stats();
        Ok(StepInfo { epoch: 0, step, batch: n, loss, lr, grad_norm: norm.map(|v| v as f32), moe })
    }

    /// Copy a batch in, then [`Trainer::step`] at the optimizer's base rate.
    pub fn train_step(&mut self, x: &[f32], y: &[f32]) -> Result<StepInfo> {
        let n = self.net.set_batch(x, y)?;
        self.step(n, self.optimizer.lr())
    }

    /// Mean loss over every sample of `ds` (batched at the planned maximum), without gradients.
    pub fn evaluate(&mut self, ds: &dyn Dataset) -> Result<f32> {
        evaluate(&mut self.net, ds)
    }

    /// Train for the configured epochs not yet done (all of them, unless resumed from a
    /// checkpoint): batches from `loader` over `train`, validation on `val` after each epoch,
    /// progress to `observer`.
    pub fn fit(
        &mut self,
        train: &dyn Dataset,
        val: Option<&dyn Dataset>,
        loader: &mut DataLoader<'_>,
        observer: &mut dyn Observer,
    ) -> Result<Summary> {
        let (in_len, out_len) = (self.net.in_len(), self.net.out_len());
        check_widths(train, in_len, out_len)?;
        if let Some(v) = val {
            check_widths(v, in_len, out_len)?;
        }
        if loader.len() != train.len() {
            return Err(Error::BadLen { what: "loader indices", expected: train.len(), got: loader.len() });
        }
        let epochs = self.config.epochs;
        let left = epochs.saturating_sub(self.epochs_done);
        let total_steps = self.steps + (left * loader.batches_per_epoch()) as u64;
        let mut summary = Summary {
            epochs: 0,
            steps: self.steps,
            final_train_loss: f32::NAN,
            final_val_loss: None,
            best_val: None,
            final_moe: None,
        };
        let measure = self.grad_norm || observer.wants_grad_norm();
        for epoch in self.epochs_done..epochs {
            loader.start_epoch(epoch as u64);
            let (mut loss_sum, mut seen, mut lr) = (0.0f64, 0usize, self.optimizer.lr());
            let (mut dropped, mut assigned, mut aux_sum, mut steps) = (0usize, 0usize, 0.0f64, 0usize);
            while let Some(idx) = loader.next_batch() {
                let n = idx.len();
                let (x, y) = self.net.batch_mut(n)?;
                train.fill(idx, x, y);
                lr = self
                    .config
                    .schedule
                    .lr(self.optimizer.lr(), Progress { step: self.steps, epoch, total_steps });
                let mut info = self.step_measuring(n, lr, measure)?;
                info.epoch = epoch;
                let aux = info.moe.map_or(0.0, |m| m.aux);
                loss_sum += f64::from(info.loss - aux) * n as f64;
                seen += n;
                if let Some(m) = info.moe {
                    (dropped, assigned, aux_sum, steps) = (
                        dropped + m.dropped,
                        assigned + m.assignments,
                        aux_sum + f64::from(m.aux),
                        steps + 1,
                    );
                }
                observer.on_step(&info);
            }
            let val_loss = match val {
                Some(v) => Some(evaluate(&mut self.net, v)?),
                None => None,
            };
            let train_loss = (loss_sum / seen as f64) as f32;
            summary.epochs = epoch + 1;
            summary.steps = self.steps;
            summary.final_train_loss = train_loss;
            summary.final_val_loss = val_loss;
            if let Some(v) = val_loss
                && summary.best_val.is_none_or(|(b, _)| v < b)
            {
                summary.best_val = Some((v, epoch));
            }
            let moe = (steps > 0)
                .then(|| (dropped as f32 / assigned.max(1) as f32, (aux_sum / steps as f64) as f32));
            summary.final_moe = moe;
            self.epochs_done = epoch + 1;
            let info = EpochInfo { epoch, epochs, steps: self.steps, train_loss, val_loss, lr, moe };
            if observer.on_epoch(&info, self).is_break() {
                break;
            }
        }
        Ok(summary)
    }
}

fn check_widths(ds: &dyn Dataset, in_len: usize, out_len: usize) -> Result<()> {
    if ds.is_empty() {
        return Err(Error::EmptyDataset);
    }
    if ds.in_len() != in_len {
        return Err(Error::BadLen { what: "dataset input width", expected: in_len, got: ds.in_len() });
    }
    if ds.out_len() != out_len {
        return Err(Error::BadLen { what: "dataset target width", expected: out_len, got: ds.out_len() });
    }
    Ok(())
}

/// Mean loss of `net` over every sample of `ds`, in batches of the planned maximum.
pub fn evaluate(net: &mut Net<'_>, ds: &dyn Dataset) -> Result<f32> {
    check_widths(ds, net.in_len(), net.out_len())?;
    let (max, il, ol) = (net.model().mode().max_batch(), ds.in_len(), ds.out_len());
    let (mut sum, mut start) = (0.0f64, 0usize);
    while start < ds.len() {
        let n = max.min(ds.len() - start);
        let (x, y) = net.batch_mut(n)?;
        for (k, (xs, ys)) in x.chunks_exact_mut(il).zip(y.chunks_exact_mut(ol)).enumerate() {
            ds.get(start + k, xs, ys);
        }
        sum += f64::from(net.eval_loss_in_place(n)?) * n as f64;
        start += n;
    }
    Ok((sum / ds.len() as f64) as f32)
}
