//! (d) Inference only: the MLP of [`crate::mlp_train`] with its trained weights in flash,
//! predicting the first rows of that scenario's validation split (also in flash).
//!
//! `fw-host export-weights` writes [`crate::weights`] from one training run on the host: the
//! params region as `u32` float bits, the same parameters as a safetensors checkpoint, and the
//! rows. Three ways to run them, each printing the same result lines:
//!
//! - [`run_net`]: plan a `Model`, carve a `Net`, copy the array into its params, `Net::predict`
//!   (the public API; the default firmware).
//! - [`run_safetensors`]: the same, loading the checkpoint with `Net::load_checkpoint`.
//! - [`run_layers`]: no `Model`: core's `linear`/`activation` layers on parameter slots laid out
//!   with core's `Layout` exactly as `Mlp::plan` lays them out, reading the weights in place in
//!   flash. This is what an MLP-only build of the public API could cost; `.ci/firmware.sh`
//!   prints it beside the others.

use regkern_core::arena::{Layout, Slot};
use regkern_core::layers::{Linear, activation, linear};
use regkern_core::{Activation, Kernels, Mode, Model, Net, sizing};

use crate::{Failure, Line, Platform, fnv1a, mlp_train, portable, report_arena, weights};

/// Rows per forward pass: two, as a sensor's firmware predicts a row or two at a time (each row
/// more costs 128 bytes of arena and 32 of stack; the image's 4 KiB budget has ~50 to spare).
pub const MAX_BATCH: usize = 2;
/// Rows predicted (four passes).
pub const ROWS: usize = weights::ROWS_Y.len();
/// Features per row.
const N_IN: usize = 8;

/// Floats of the static arena of [`run_net`] and [`run_safetensors`], at compile time.
pub const ARENA_FLOATS: usize = sizing::mlp_floats(
    mlp_train::N_IN,
    &mlp_train::HIDDEN,
    mlp_train::N_OUT,
    Mode::Inference { max_batch: MAX_BATCH },
);

/// Floats of the activation buffers [`run_layers`] needs: two ping-pong buffers as wide as the
/// widest layer.
pub const LAYERS_ARENA_FLOATS: usize = 2 * MAX_BATCH * 16;

/// Predict with the weights copied from the `u32` array in flash.
pub fn run_net(p: &mut impl Platform, arena: &mut [f32]) -> Result<(), Failure> {
    let mut net = plan(p, arena)?;
    let params = net.params_mut();
    if params.len() != weights::MLP_PARAMS.len() {
        return Err(Failure::Check("weights_do_not_fit_the_plan"));
    }
    for (dst, &bits) in params.iter_mut().zip(weights::MLP_PARAMS.iter()) {
        *dst = f32::from_bits(bits);
    }
    Line::new("weights_checksum").hex(fnv1a(net.params())).emit(p);
    predict(p, |x, out| net.predict(x, out).map_err(Failure::from))
}

/// Predict with the weights loaded from the safetensors checkpoint in flash.
pub fn run_safetensors(p: &mut impl Platform, arena: &mut [f32]) -> Result<(), Failure> {
    let mut net = plan(p, arena)?;
    net.load_checkpoint(weights::MLP_SAFETENSORS)?;
    Line::new("weights_checksum").hex(fnv1a(net.params())).emit(p);
    predict(p, |x, out| net.predict(x, out).map_err(Failure::from))
}

// Inlined into its callers: returning the `Net` through a frame of its own would put a second
// copy of it on the stack.
#[inline(always)]
fn plan<'a>(p: &mut impl Platform, arena: &'a mut [f32]) -> Result<Net<'a>, Failure> {
    let model = Model::plan(&mlp_train::config(), Mode::Inference { max_batch: MAX_BATCH })?;
    report_arena(p, "mlp_infer", &model, arena.len());
    let mut net = Net::new(model, arena)?;
    portable(&mut net);
    Ok(net)
}

/// The weights and rows as floats, converted at compile time: they stay in flash (and the rows
/// are read in place, not copied to the stack).
static PARAMS: [f32; weights::MLP_PARAMS.len()] = to_f32(&weights::MLP_PARAMS);
static ROWS_X: [f32; weights::ROWS_X.len()] = to_f32(&weights::ROWS_X);
static ROWS_Y: [f32; ROWS] = to_f32(&weights::ROWS_Y);

const fn to_f32<const N: usize>(bits: &[u32; N]) -> [f32; N] {
    let mut out = [0.0; N];
    let mut i = 0;
    while i < N {
        out[i] = f32::from_bits(bits[i]);
        i += 1;
    }
    out
}

/// One linear layer of the MLP: dims and parameter slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerSlots {
    /// Dims (on the portable kernels).
    pub dims: Linear,
    /// Weight slot in the params region.
    pub w: Slot,
    /// Bias slot in the params region.
    pub b: Slot,
}

/// The params layout of `mlp_train::config()`: per layer its weight then its bias, each taken
/// from a bump [`Layout`] — what `Mlp::plan` does (a host test checks it against the model's
/// parameter table). Also returns the floats of the whole region.
pub fn layer_slots() -> Result<([LayerSlots; 3], usize), Failure> {
    let mut layout = Layout::default();
    let mut slots = [LayerSlots { dims: Linear::new(0, 0), w: Slot::default(), b: Slot::default() }; 3];
    for (s, (n_in, n_out)) in slots.iter_mut().zip([(N_IN, 16), (16, 8), (8, 1)]) {
        let (w, b) = (layout.take(n_in * n_out)?, layout.take(n_out)?);
        *s = LayerSlots { dims: Linear::new(n_in, n_out).on(Kernels::Portable), w, b };
    }
    Ok((slots, layout.len()))
}

/// Predict through core's layers directly, the weights read in place from flash; `arena` holds
/// the two activation buffers ([`LAYERS_ARENA_FLOATS`]).
pub fn run_layers(p: &mut impl Platform, arena: &mut [f32]) -> Result<(), Failure> {
    let (slots, floats) = layer_slots()?;
    if floats != PARAMS.len() {
        return Err(Failure::Check("weights_do_not_fit_the_plan"));
    }
    if arena.len() < LAYERS_ARENA_FLOATS {
        return Err(Failure::Core(regkern_core::Error::ArenaTooSmall {
            needed: LAYERS_ARENA_FLOATS * 4,
            got: arena.len() * 4,
        }));
    }
    Line::new("weights_checksum").hex(fnv1a(&PARAMS)).emit(p);
    let (ping, pong) = arena[..LAYERS_ARENA_FLOATS].split_at_mut(LAYERS_ARENA_FLOATS / 2);
    predict(p, |x, out| {
        let n = x.len() / N_IN;
        let (mut src, mut dst) = (&mut *ping, &mut *pong);
        src[..x.len()].copy_from_slice(x);
        let mut width = N_IN;
        for (i, s) in slots.iter().enumerate() {
            let (inp, h) = (&src[..n * width], &mut dst[..n * s.dims.n_out]);
            linear::forward(h, inp, &PARAMS[s.w.range()], &PARAMS[s.b.range()], s.dims);
            if i + 1 < slots.len() {
                activation::forward_inplace(h, Activation::Relu);
            }
            width = s.dims.n_out;
            core::mem::swap(&mut src, &mut dst);
        }
        out.copy_from_slice(&src[..n]);
        Ok(())
    })
}

/// Predict the rows in batches of [`MAX_BATCH`] with `forward` (x: n × 8 → out: n); print each
/// prediction beside its target and the MSE beside that of predicting the rows' mean target.
/// Fails unless the model beats the mean.
#[inline(never)]
fn predict(
    p: &mut impl Platform,
    mut forward: impl FnMut(&[f32], &mut [f32]) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut out = [0.0f32; ROWS];
    for (batch, ob) in out.chunks_mut(MAX_BATCH).enumerate() {
        forward(&ROWS_X[batch * MAX_BATCH * N_IN..][..ob.len() * N_IN], ob)?;
    }
    let y = &ROWS_Y;
    let mean = y.iter().sum::<f32>() / ROWS as f32;
    let (mut model_se, mut mean_se) = (0.0f32, 0.0f32);
    for (i, (&o, &t)) in out.iter().zip(y).enumerate() {
        Line::new("predict").dec(i as u64).f32(o).f32(t).emit(p);
        (model_se, mean_se) = (model_se + (o - t) * (o - t), mean_se + (mean - t) * (mean - t));
    }
    let (model_mse, mean_mse) = (model_se / ROWS as f32, mean_se / ROWS as f32);
    Line::new("mse model").f32(model_mse).word("mean").f32(mean_mse).emit(p);
    if model_mse < mean_mse { Ok(()) } else { Err(Failure::Check("model_no_better_than_the_mean")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layers path lays the parameters out as the model's parameter table says.
    #[test]
    fn layer_slots_match_the_models_parameter_table() {
        let model = Model::plan(&mlp_train::config(), Mode::Inference { max_batch: MAX_BATCH }).unwrap();
        let table: Vec<Slot> = model.params().map(|p| p.slot).collect();
        let (slots, floats) = layer_slots().unwrap();
        let ours: Vec<Slot> = slots.iter().flat_map(|s| [s.w, s.b]).collect();
        assert_eq!(ours, table);
        assert_eq!(floats, model.report().floats(regkern_core::Region::Params));
    }

    struct Lines(Vec<Vec<u8>>);

    impl Platform for Lines {
        fn line(&mut self, text: &[u8]) {
            self.0.push(text.to_vec());
        }
    }

    /// All three paths predict the same bits (the arena lines aside).
    #[test]
    fn every_path_predicts_the_same_bits() {
        let run = |f: fn(&mut Lines, &mut [f32]) -> Result<(), Failure>| {
            let mut lines = Lines(Vec::new());
            f(&mut lines, &mut [0.0; ARENA_FLOATS]).unwrap();
            lines.0.retain(|l| !l.starts_with(b"arena"));
            lines.0
        };
        let net = run(run_net);
        assert!(net.iter().filter(|l| l.starts_with(b"predict")).count() == ROWS);
        assert_eq!(run(run_safetensors), net);
        assert_eq!(run(run_layers), net);
    }
}
