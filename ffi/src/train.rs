//! Training, evaluation, prediction and generation through a model handle.

use regkern_core::models::{Context, Generate};
use regkern_core::schedule::Progress;
use regkern_core::{Error, Result, Schedule, TrainConfig};

use crate::check::in_ref;
use crate::model::{State, with_model};
use crate::{rk_error, rk_model, rk_schedule, rk_status, rk_step_info};

/// Set the learning-rate schedule and gradient clipping of `rk_train_step` (training models;
/// -8 otherwise; -1 for invalid values).
///
/// # Safety
/// `model` must be a handle from `rk_model_init`; `schedule` a valid struct; `err` may be NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_set_schedule(
    model: *mut rk_model,
    schedule: *const rk_schedule,
    err: *mut rk_error,
) -> rk_status {
    // SAFETY: see above.
    unsafe {
        with_model(model, err, |m| {
            let s = in_ref(schedule, "schedule")?;
            let core_schedule = s.to_core()?;
            let cosine = matches!(core_schedule, Schedule::Cosine { .. } | Schedule::WarmupCosine { .. });
            if cosine && s.total_steps < 2 {
                return Err(Error::BadConfig {
                    field: "total_steps",
                    reason: "must be at least 2 for a cosine schedule (the run's length)",
                });
            }
            if s.steps_per_epoch == 0 || s.total_steps == 0 {
                return Err(Error::BadConfig {
                    field: "steps_per_epoch",
                    reason: "and total_steps must be at least 1",
                });
            }
            let State::Train(trainer, stored, schedule) = m.state() else {
                return Err(Error::NotTrainable);
            };
            let clip = (s.clip_grad_norm > 0.0).then_some(s.clip_grad_norm);
            trainer.set_config(TrainConfig { epochs: 1, schedule: core_schedule, clip_grad_norm: clip })?;
            (*stored, *schedule) = (*s, core_schedule);
            Ok(())
        })
    }
}

/// One optimizer step on a batch: `x` holds n samples of `in_len` floats (`x_len = n · in_len`),
/// `y` their targets (`n · out_len`). The loss before the update, the learning rate and the
/// gradient norm go to `*info` (may be NULL). On -5 (non-finite loss or gradient) the
/// parameters are unchanged.
///
/// Errors: -2 wrong lengths, -4 batch above `max_batch`, -5 non-finite, -8 inference model, -12
/// bad pointers or buffers overlapping the arena.
///
/// # Safety
/// `model` must be a handle from `rk_model_init`; `x`, `y` readable arrays of the given lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_train_step(
    model: *mut rk_model,
    x: *const f32,
    x_len: usize,
    y: *const f32,
    y_len: usize,
    info: *mut rk_step_info,
    err: *mut rk_error,
) -> rk_status {
    // SAFETY: see above.
    unsafe {
        with_model(model, err, |m| {
            let (xs, ys) = (m.input(x, x_len, "x")?, m.input(y, y_len, "y")?);
            let info = if info.is_null() { None } else { Some(m.output_ref(info, "info")?) };
            let State::Train(trainer, s, schedule) = m.state() else { return Err(Error::NotTrainable) };
            let n = trainer.net().set_batch(xs, ys)?;
            let step = trainer.steps();
            let epoch = (step / u64::from(s.steps_per_epoch.max(1))) as usize;
            let at = Progress { step, epoch, total_steps: s.total_steps };
            let lr = schedule.lr(trainer.optimizer().lr(), at);
            // The norm costs a pass in f64 (software on a Cortex-M4F): measured only for a
            // caller that takes the step's details.
            trainer.measure_grad_norm(info.is_some());
            let st = trainer.step(n, lr)?;
            if let Some(i) = info {
                let moe = st.moe.unwrap_or_default();
                *i = rk_step_info {
                    loss: st.loss,
                    lr: st.lr,
                    grad_norm: st.grad_norm.unwrap_or(f32::NAN),
                    steps: trainer.steps(),
                    moe_aux: moe.aux,
                    moe_dropped: moe.dropped as u64,
                    moe_assignments: moe.assignments as u64,
                };
            }
            Ok(())
        })
    }
}

/// The loss (MSE; MoE's load-balancing loss excluded) on a batch, without gradients (training
/// models: they hold the target buffer; -8 otherwise). Encoder-decoders are teacher-forced.
///
/// # Safety
/// As for `rk_train_step`; `loss` a writable float.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_eval_loss(
    model: *mut rk_model,
    x: *const f32,
    x_len: usize,
    y: *const f32,
    y_len: usize,
    loss: *mut f32,
    err: *mut rk_error,
) -> rk_status {
    // SAFETY: see above.
    unsafe {
        with_model(model, err, |m| {
            let (xs, ys) = (m.input(x, x_len, "x")?, m.input(y, y_len, "y")?);
            let loss = m.output_ref(loss, "loss")?;
            *loss = m.net().eval_loss(xs, ys)?;
            Ok(())
        })
    }
}

/// Predict `out` (n · out_len floats) for `x` (n · in_len floats): outputs per sample, per
/// position (autoregressive), or the greedy decode (encoder-decoders, through their caches when
/// planned).
///
/// # Safety
/// `model` must be a handle from `rk_model_init`; `x` readable and `out` writable arrays of the
/// given lengths, not overlapping each other or the arena.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_predict(
    model: *mut rk_model,
    x: *const f32,
    x_len: usize,
    out: *mut f32,
    out_len: usize,
    err: *mut rk_error,
) -> rk_status {
    // SAFETY: see above.
    unsafe {
        with_model(model, err, |m| {
            let (xs, os) = (m.input(x, x_len, "x")?, m.output(out, out_len, "out")?);
            disjoint(xs, os)?;
            m.net().predict(xs, os)
        })
    }
}

/// `out` must not overlap the input it is computed from.
fn disjoint(input: &[f32], out: &[f32]) -> Result<()> {
    let (a, b) = (input.as_ptr_range(), out.as_ptr_range());
    if !input.is_empty() && !out.is_empty() && a.start < b.end && b.start < a.end {
        return Err(Error::BadPointer { what: "out", reason: "overlaps an input" });
    }
    Ok(())
}

/// Greedy generation (autoregressive transformers): `prompt` holds n sequences of
/// `prompt_positions` positions (`prompt_len = n · prompt_positions · input_dim` floats); `steps`
/// values are generated after each into `out` (`n · steps · output_dim` floats). `window` 0 keeps
/// an expanding context (up to `max_seq_len`), otherwise the last `window` positions;
/// `use_cache` non-zero uses the KV cache planned in the config.
///
/// Errors: -1 (not autoregressive, bad steps/window, no cache planned), -2 lengths, -10 context
/// longer than `max_seq_len`.
///
/// # Safety
/// As for `rk_predict`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_generate(
    model: *mut rk_model,
    prompt: *const f32,
    prompt_len: usize,
    prompt_positions: usize,
    out: *mut f32,
    out_len: usize,
    steps: usize,
    window: usize,
    use_cache: u8,
    err: *mut rk_error,
) -> rk_status {
    // SAFETY: see above.
    unsafe {
        with_model(model, err, |m| {
            let (ps, os) = (m.input(prompt, prompt_len, "prompt")?, m.output(out, out_len, "out")?);
            disjoint(ps, os)?;
            let context = if window == 0 { Context::Expanding } else { Context::Sliding { window } };
            m.net().generate(ps, prompt_positions, os, Generate { steps, context, use_cache: use_cache != 0 })
        })
    }
}
