//! Safetensors checkpoints to and from caller buffers through a model handle.

use regkern_core::checkpoint::Header;
use regkern_core::{Error, ModelConfig, Result};

use crate::check::{in_slice, out_ref, report};
use crate::model::{State, with_model};
use crate::{rk_error, rk_model, rk_model_config, rk_status};

/// Bytes `rk_checkpoint_save` needs: the parameters (`training_state` 0), or parameters,
/// optimizer state and progress for resuming (non-zero; an upper bound; training models only).
///
/// # Safety
/// `model` must be a handle from `rk_model_init`; `bytes` a writable size_t.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_checkpoint_size(
    model: *mut rk_model,
    training_state: u8,
    bytes: *mut usize,
    err: *mut rk_error,
) -> rk_status {
    // SAFETY: see above.
    unsafe {
        with_model(model, err, |m| {
            let bytes = out_ref(bytes, "bytes")?;
            *bytes = match (m.state(), training_state != 0) {
                (State::Train(t, ..), true) => t.checkpoint_len()?,
                (_, true) => return Err(Error::NotTrainable),
                (_, false) => m.net_ref().checkpoint_len()?,
            };
            Ok(())
        })
    }
}

/// Write a safetensors checkpoint (PyTorch names, the config in the metadata) into `buf`
/// (`buf_len` bytes); its length goes to `*written`. With `training_state` non-zero it also
/// holds the optimizer state and progress (training models). Errors: -2 if `buf` is too small
/// (`err->needed`).
///
/// # Safety
/// `model` must be a handle from `rk_model_init`; `buf` writable for `buf_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_checkpoint_save(
    model: *mut rk_model,
    training_state: u8,
    buf: *mut u8,
    buf_len: usize,
    written: *mut usize,
    err: *mut rk_error,
) -> rk_status {
    // SAFETY: see above.
    unsafe {
        with_model(model, err, |m| {
            let (out, written) = (m.output(buf, buf_len, "buf")?, m.output_ref(written, "written")?);
            *written = match (m.state(), training_state != 0) {
                (State::Train(t, ..), true) => t.save_checkpoint(out)?,
                (_, true) => return Err(Error::NotTrainable),
                (State::Train(t, ..), false) => t.net().save_checkpoint(out)?,
                (State::Infer(n), false) => n.save_checkpoint(out)?,
            };
            Ok(())
        })
    }
}

/// Load a checkpoint of this model from `buf`: the parameters (`training_state` 0; also
/// accepts files PyTorch's `safetensors.torch.save_file` wrote), or parameters, optimizer state
/// and progress (non-zero, training models). Everything is checked before anything is written:
/// on error the model is unchanged. Errors: -11 with `err->got` = the byte offset of the problem.
///
/// # Safety
/// `model` must be a handle from `rk_model_init`; `buf` readable for `buf_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_checkpoint_load(
    model: *mut rk_model,
    buf: *const u8,
    buf_len: usize,
    training_state: u8,
    err: *mut rk_error,
) -> rk_status {
    // SAFETY: see above.
    unsafe {
        with_model(model, err, |m| {
            let bytes = m.input(buf, buf_len, "buf")?;
            match (m.state(), training_state != 0) {
                (State::Train(t, ..), true) => t.load_checkpoint(bytes).map(|_| ()),
                (_, true) => Err(Error::NotTrainable),
                (State::Train(t, ..), false) => t.net().load_checkpoint(bytes),
                (State::Infer(n), false) => n.load_checkpoint(bytes),
            }
        })
    }
}

/// Whether `buf` holds a regkern checkpoint and, if so, its model config in `*config` (so a
/// program can plan a model for a file it did not write). Errors: -11 not a regkern checkpoint.
///
/// # Safety
/// `buf` readable for `buf_len` bytes; `config` a writable struct.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_checkpoint_config(
    buf: *const u8,
    buf_len: usize,
    config: *mut rk_model_config,
    err: *mut rk_error,
) -> rk_status {
    let r = (|| {
        // SAFETY: the caller's promise about `buf` and `config`.
        let (bytes, out) = unsafe { (in_slice(buf, buf_len, "buf")?, out_ref(config, "config")?) };
        let cfg = Header::parse(bytes)?.config()?;
        *out = config_to_c(&cfg)?;
        Ok(())
    })();
    report(r, err)
}

/// The C view of a checkpoint's config, if C can hold it exactly: `rk_model_config` keeps sizes
/// as `u32` and at most `RK_MAX_HIDDEN` hidden layers, so a header claiming more is refused
/// rather than truncated (the C view must plan the very model the file holds).
fn config_to_c(cfg: &ModelConfig) -> Result<rk_model_config> {
    let c = rk_model_config::from_core(cfg);
    if c.to_core().ok().as_ref() != Some(cfg) {
        return Err(Error::BadCheckpoint {
            reason: "its config does not fit rk_model_config (a size above 4294967295 or more hidden \
                     layers than RK_MAX_HIDDEN)",
            offset: 0,
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use regkern_core::{LinearConfig, MlpConfig, ModelConfig};

    use super::config_to_c;

    #[test]
    fn configs_c_cannot_hold_exactly_are_refused() {
        let fits = ModelConfig::Linear(LinearConfig { n_in: 8, n_out: 1 });
        assert!(config_to_c(&fits).is_ok());
        #[cfg(target_pointer_width = "64")]
        {
            let wide = ModelConfig::Linear(LinearConfig { n_in: (1 << 32) + 8, n_out: 1 });
            assert_eq!(config_to_c(&wide).err().map(|e| e.code()), Some(crate::RK_E_BAD_CHECKPOINT));
            let wide = ModelConfig::Mlp(MlpConfig {
                n_in: 2,
                latent_dims: [4, 1 << 33].into_iter().collect(),
                n_out: 1,
                act: regkern_core::Activation::Relu,
            });
            assert_eq!(config_to_c(&wide).err().map(|e| e.code()), Some(crate::RK_E_BAD_CHECKPOINT));
        }
    }
}
