//! Learning-rate schedules, evaluated once per optimizer step from the step's position in the run.
//!
//! `step` and `exponential` change the rate once per epoch, like PyTorch's `StepLR` and
//! `ExponentialLR` stepped at each epoch's end. `cosine` anneals per step from the base rate to
//! `min_lr` over the whole run (`CosineAnnealingLR` with `T_max` = total steps);
//! `warmup_cosine` first rises linearly from 0 over `warmup_steps`, then anneals the same way.

use crate::error::{Result, ensure};

/// A learning-rate schedule (`--scheduler`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step {
        /// Epochs between decays.
        step_size: usize,
        /// Decay factor.
        gamma: f32,
    },
    /// Multiply by `gamma` every epoch.
    Exponential {
        /// Decay factor per epoch.
        gamma: f32,
    },
    /// Cosine from the base rate down to `min_lr` over the run.
    Cosine {
        /// Rate at the last step.
        min_lr: f32,
    },
    /// Linear warmup from 0 over `warmup_steps`, then cosine down to `min_lr`.
    WarmupCosine {
        /// Steps of linear warmup.
        warmup_steps: usize,
        /// Rate at the last step.
        min_lr: f32,
    },
}

/// Where a step falls in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// 0-based optimizer step.
    pub step: u64,
    /// 0-based epoch.
    pub epoch: usize,
    /// Steps in the whole run.
    pub total_steps: u64,
}

impl Schedule {
    /// The CLI spelling.
    pub const fn name(&self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Step { .. } => "step",
            Schedule::Exponential { .. } => "exponential",
            Schedule::Cosine { .. } => "cosine",
            Schedule::WarmupCosine { .. } => "warmup_cosine",
        }
    }

    /// Check the parameters.
    pub fn validate(&self) -> Result<()> {
        let decay_ok = |g: f32| g.is_finite() && g > 0.0;
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Step { step_size, gamma } => {
                ensure(step_size > 0, "step_size", "must be at least 1")?;
                ensure(decay_ok(gamma), "gamma", "must be a positive finite number")
            }
            Schedule::Exponential { gamma } => {
                ensure(decay_ok(gamma), "gamma", "must be a positive finite number")
            }
            Schedule::Cosine { min_lr } | Schedule::WarmupCosine { min_lr, .. } => {
                ensure(min_lr.is_finite() && min_lr >= 0.0, "min_lr", "must be >= 0")
            }
        }
    }

    /// The learning rate at `at`, given the base rate.
    pub fn lr(&self, base: f32, at: Progress) -> f32 {
        let cosine = |min_lr: f32, done: u64, span: u64| {
            let frac = if span <= 1 { 0.0 } else { done as f64 / (span - 1) as f64 };
            let c = 0.5 * (1.0 + libm::cos(core::f64::consts::PI * frac.min(1.0)));
            (f64::from(min_lr) + (f64::from(base) - f64::from(min_lr)) * c) as f32
        };
        match *self {
            Schedule::Constant => base,
            Schedule::Step { step_size, gamma } => base * libm::powf(gamma, (at.epoch / step_size) as f32),
            Schedule::Exponential { gamma } => base * libm::powf(gamma, at.epoch as f32),
            Schedule::Cosine { min_lr } => cosine(min_lr, at.step, at.total_steps),
            Schedule::WarmupCosine { warmup_steps, min_lr } => {
                let w = warmup_steps as u64;
                if at.step < w {
                    base * (at.step + 1) as f32 / w as f32
                } else {
                    cosine(min_lr, at.step - w, at.total_steps.saturating_sub(w))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(step: u64, epoch: usize) -> Progress {
        Progress { step, epoch, total_steps: 101 }
    }

    #[test]
    fn shapes_of_each_schedule() {
        assert_eq!(Schedule::Constant.lr(0.1, at(50, 3)), 0.1);
        let s = Schedule::Step { step_size: 2, gamma: 0.5 };
        assert_eq!((s.lr(1.0, at(0, 1)), s.lr(1.0, at(0, 2)), s.lr(1.0, at(0, 5))), (1.0, 0.5, 0.25));
        assert!((Schedule::Exponential { gamma: 0.9 }.lr(1.0, at(0, 2)) - 0.81).abs() < 1e-6);
        let c = Schedule::Cosine { min_lr: 0.0 };
        assert_eq!(c.lr(1.0, at(0, 0)), 1.0);
        assert!((c.lr(1.0, at(50, 0)) - 0.5).abs() < 1e-6);
        assert!(c.lr(1.0, at(100, 0)).abs() < 1e-6);
        let w = Schedule::WarmupCosine { warmup_steps: 10, min_lr: 0.1 };
        assert!((w.lr(1.0, at(0, 0)) - 0.1).abs() < 1e-6);
        assert!((w.lr(1.0, at(9, 0)) - 1.0).abs() < 1e-6);
        assert!((w.lr(1.0, at(10, 0)) - 1.0).abs() < 1e-6);
        assert!((w.lr(1.0, at(100, 0)) - 0.1).abs() < 1e-6);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        assert!(Schedule::Step { step_size: 0, gamma: 0.5 }.validate().is_err());
        assert!(Schedule::Exponential { gamma: -1.0 }.validate().is_err());
        assert!(Schedule::Cosine { min_lr: f32::NAN }.validate().is_err());
    }
}
