//! The model handle in the caller's arena: planning, initialisation, sizes and parameters.

use core::mem::{align_of, size_of, size_of_val};

use regkern_core::{Error, Memory, Model, Net, Result, Schedule, TrainConfig, Trainer};

use crate::check::{c_string, check_ptr, in_ref, in_slice, out_ref, out_slice, report};
use crate::{
    RK_ARENA_ALIGN, rk_dims, rk_error, rk_mode, rk_model_config, rk_plan, rk_schedule, rk_schedule_default,
    rk_status, rk_tensor_info,
};

/// A model handle, living at the start of the caller's arena: opaque, valid only at the address
/// `rk_model_init` returned (a copy of its bytes elsewhere is refused).
// A wrapper without `repr(C)`, so cbindgen declares an incomplete struct. Its one field is at
// offset 0 (asserted below), so the handle begins with its `Tag`.
pub struct rk_model(Handle);

/// What the handle holds. `repr(C)`, so that [`Tag`] comes first: a pointer is judged by the
/// tag alone, and nothing past it is read unless the tag matches.
#[repr(C)]
pub(crate) struct Handle {
    tag: Tag,
    /// The caller's arena: `[start, end)`.
    arena: (usize, usize),
    state: State,
}

/// The first [`TAG_BYTES`] bytes of a live handle: the magic number and the handle's own
/// address, written by `rk_model_init`. A `memcpy` of a handle carries the original's address,
/// not its own, so it is refused (its state points into the original's arena).
#[repr(C)]
#[derive(Clone, Copy)]
struct Tag {
    /// [`MAGIC`] while the handle lives; 0 after `rk_model_deinit`.
    magic: u64,
    /// The address the handle was initialised at (a `u64`, so the tag has one size everywhere).
    at: u64,
}

const MAGIC: u64 = 0x7265_676b_6572_6e31; // "regkern1"

/// Bytes read at a pointer passed as a model before it is known to be a handle.
pub(crate) const TAG_BYTES: usize = size_of::<Tag>();

const _: () = assert!(core::mem::offset_of!(rk_model, 0) == 0, "the handle starts with its tag");
const _: () = assert!(core::mem::offset_of!(Handle, tag) == 0 && TAG_BYTES == 16);
const _: () = assert!(align_of::<rk_model>() >= align_of::<u64>(), "the tag is read as u64s");
const _: () = assert!(size_of::<usize>() <= size_of::<u64>(), "an address fits the tag's u64");

pub(crate) enum State {
    Infer(Net<'static>),
    Train(Trainer<'static>, rk_schedule, Schedule),
}

impl rk_model {
    /// The model's state: inference or training.
    pub(crate) fn state(&mut self) -> &mut State {
        &mut self.0.state
    }

    pub(crate) fn net(&mut self) -> &mut Net<'static> {
        match &mut self.0.state {
            State::Infer(n) => n,
            State::Train(t, ..) => t.net(),
        }
    }

    pub(crate) fn net_ref(&self) -> &Net<'static> {
        match &self.0.state {
            State::Infer(n) => n,
            State::Train(t, ..) => t.net_ref(),
        }
    }

    /// Check that `[p, p + bytes)` does not overlap the arena.
    pub(crate) fn outside(&self, p: usize, bytes: usize, what: &'static str) -> Result<()> {
        let end = p.saturating_add(bytes);
        let (start, stop) = self.0.arena;
        if bytes > 0 && p < stop && start < end {
            return Err(Error::BadPointer { what, reason: "overlaps the model's arena" });
        }
        Ok(())
    }

    /// `len` `T`s at `p` to read: [`in_slice`]'s checks, and outside the arena.
    ///
    /// # Safety
    /// As for [`in_slice`].
    pub(crate) unsafe fn input<'a, T>(&self, p: *const T, len: usize, what: &'static str) -> Result<&'a [T]> {
        // SAFETY: forwarded to the caller.
        let s = unsafe { in_slice(p, len, what)? };
        self.outside(p as usize, size_of_val(s), what)?;
        Ok(s)
    }

    /// `len` `T`s at `p` to write: [`out_slice`]'s checks, and outside the arena.
    ///
    /// # Safety
    /// As for [`out_slice`].
    pub(crate) unsafe fn output<'a, T>(
        &self,
        p: *mut T,
        len: usize,
        what: &'static str,
    ) -> Result<&'a mut [T]> {
        // SAFETY: forwarded to the caller.
        let s = unsafe { out_slice(p, len, what)? };
        self.outside(p as usize, size_of_val(s), what)?;
        Ok(s)
    }

    /// One `T` at `p` to write: [`out_ref`]'s checks, and outside the arena.
    ///
    /// # Safety
    /// As for [`out_ref`].
    pub(crate) unsafe fn output_ref<'a, T>(&self, p: *mut T, what: &'static str) -> Result<&'a mut T> {
        // SAFETY: forwarded to the caller.
        let r = unsafe { out_ref(p, what)? };
        self.outside(p as usize, size_of::<T>(), what)?;
        Ok(r)
    }
}

/// The handle at `m`, if it is one: non-null, aligned, and starting with a live [`Tag`] that
/// holds `m`'s own address. The magic (8 bytes) is read first and the address (8 more) only if
/// it matches; nothing past the tag is read unless both match.
///
/// # Safety
/// `m`, if non-null and aligned, must point to 8 readable bytes, and to [`TAG_BYTES`] if they
/// hold the magic; memory that starts with a live tag holding its own address must be a handle
/// `rk_model_init` wrote (a copy of a handle holds another address and is refused).
pub(crate) unsafe fn model<'a>(m: *mut rk_model) -> Result<&'a mut rk_model> {
    check_ptr(m as *const rk_model, "model")?;
    let tag = m as *const u64; // `Tag` is two u64s at offset 0 (asserted above)
    // SAFETY: non-null and 8-aligned (checked; rk_model's alignment is at least u64's); 8
    // readable bytes are the caller's promise, and any bit pattern is a valid u64.
    if unsafe { core::ptr::read(tag) } != MAGIC {
        return Err(Error::BadPointer { what: "model", reason: "is not an initialised rk_model" });
    }
    // SAFETY: the magic matched, so the caller promises the whole tag is readable.
    if unsafe { core::ptr::read(tag.add(1)) } != m as usize as u64 {
        return Err(Error::BadPointer {
            what: "model",
            reason: "is a copy of a handle: only the one rk_model_init placed in its arena is valid",
        });
    }
    // SAFETY: a live tag holding its own address: `rk_model_init` wrote a handle here.
    Ok(unsafe { &mut *m })
}

/// The arena bytes the handle takes (rounded up so the float regions start 64-byte aligned).
pub(crate) const HANDLE_BYTES: usize = size_of::<rk_model>().next_multiple_of(64);

pub(crate) fn plan(cfg: *const rk_model_config, mode: *const rk_mode) -> Result<Model> {
    // SAFETY: checked for null and alignment; the caller passes valid structs.
    let (cfg, mode) = unsafe { (in_ref(cfg, "config")?, in_ref(mode, "mode")?) };
    let cfg = cfg.to_core()?;
    let seq_len = match mode.seq_len {
        0 => cfg.max_seq_len(),
        n => n as usize,
    };
    let memory = if mode.lean_memory != 0 { Memory::Lean } else { Memory::Fast };
    Model::plan_with(&cfg, mode.to_core()?, seq_len, memory)
}

/// Compute the bytes of every region of `config` planned for `mode` into `*out`, from the
/// config alone (no memory is touched). `out->total_bytes` is the arena `rk_model_init` needs.
///
/// Errors: `RK_E_BAD_CONFIG` naming the invalid field, `RK_E_SIZE_OVERFLOW`, `RK_E_BAD_POINTER`
/// for NULL or misaligned pointers.
///
/// # Safety
/// `config`, `mode` and `out` must point to valid structs (or be NULL, which is an error);
/// `err` may be NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_model_plan(
    config: *const rk_model_config,
    mode: *const rk_mode,
    out: *mut rk_plan,
    err: *mut rk_error,
) -> rk_status {
    let r = (|| {
        let model = plan(config, mode)?;
        // SAFETY: checked for null and alignment.
        let out = unsafe { out_ref(out, "out")? };
        let r = model.report();
        let b = |region| r.bytes(region) as u64;
        use regkern_core::Region::*;
        let total = r.total_bytes()?.checked_add(HANDLE_BYTES).ok_or(Error::SizeOverflow)?;
        *out = rk_plan {
            params: b(Params),
            grads: b(Grads),
            opt_state: b(OptState),
            acts: b(Acts),
            act_grads: b(ActGrads),
            scratch: b(Scratch),
            kv_cache: b(KvCache),
            handle: HANDLE_BYTES as u64,
            total_bytes: total as u64,
        };
        Ok(())
    })();
    report(r, err)
}

/// Plan `config` for `mode` and build the model in `arena` (`arena_bytes` bytes, aligned to
/// `RK_ARENA_ALIGN`): the handle is placed at the arena's start and `*out` set to it. Parameters
/// start at zero: call `rk_init_params` or load a checkpoint. Training models start with a
/// constant learning rate (the optimizer's) and no clipping (`rk_set_schedule` changes that).
///
/// Errors: -1 invalid config, -3 arena too small (`err->needed`/`got` in bytes), -12 NULL or
/// misaligned arena, or `out` or `err` inside the arena (`err` is then left unwritten).
///
/// # Safety
/// `arena` must be `arena_bytes` writable bytes that the caller keeps alive and does not touch
/// until `rk_model_deinit`; the other pointers as in `rk_model_plan`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_model_init(
    config: *const rk_model_config,
    mode: *const rk_mode,
    arena: *mut u8,
    arena_bytes: usize,
    out: *mut *mut rk_model,
    err: *mut rk_error,
) -> rk_status {
    // Details are never written into the arena (on success they would overwrite the handle):
    // an `err` inside it is refused unwritten.
    let (err_at, arena_at) = (err as usize, arena as usize);
    if !err.is_null()
        && err_at < arena_at.saturating_add(arena_bytes)
        && arena_at < err_at.saturating_add(size_of::<rk_error>())
    {
        return Error::BadPointer { what: "err", reason: "lies inside the arena" }.code();
    }
    let r = (|| {
        let model = plan(config, mode)?;
        check_ptr(arena, "arena")?;
        if !(arena as usize).is_multiple_of(RK_ARENA_ALIGN) {
            return Err(Error::BadPointer { what: "arena", reason: "is not aligned to RK_ARENA_ALIGN" });
        }
        let floats = model.report().total_floats();
        let needed = model.report().total_bytes()?.checked_add(HANDLE_BYTES).ok_or(Error::SizeOverflow)?;
        if arena_bytes < needed {
            return Err(Error::ArenaTooSmall { needed, got: arena_bytes });
        }
        let start = arena as usize;
        start.checked_add(arena_bytes).ok_or(Error::SizeOverflow)?;
        // SAFETY: checked for null and alignment.
        let out = unsafe { out_ref(out, "out")? };
        let out_at = out as *mut *mut rk_model as usize;
        if out_at + size_of::<*mut rk_model>() > start && out_at < start + arena_bytes {
            return Err(Error::BadPointer { what: "out", reason: "lies inside the arena" });
        }
        // SAFETY: the arena holds `needed` bytes (checked); the float regions start at a
        // 64-byte offset from an 8-aligned base, so they are aligned for f32, and do not overlap
        // the handle. The caller keeps the arena alive and untouched while the handle lives.
        let floats: &'static mut [f32] =
            unsafe { core::slice::from_raw_parts_mut(arena.add(HANDLE_BYTES) as *mut f32, floats) };
        let training = model.mode().is_training();
        let net = Net::new(model, floats)?;
        let state = if training {
            let optimizer = match net.model().mode() {
                regkern_core::Mode::Training { optimizer, .. } => optimizer,
                regkern_core::Mode::Inference { .. } => unreachable!("checked above"),
            };
            let config = TrainConfig { epochs: 1, schedule: Schedule::Constant, clip_grad_norm: None };
            State::Train(Trainer::new(net, optimizer, config)?, rk_schedule_default(), Schedule::Constant)
        } else {
            State::Infer(net)
        };
        let tag = Tag { magic: MAGIC, at: start as u64 };
        let handle = rk_model(Handle { tag, arena: (start, start + arena_bytes), state });
        // SAFETY: the arena is aligned for rk_model and holds HANDLE_BYTES ≥ its size.
        unsafe { core::ptr::write(arena as *mut rk_model, handle) };
        *out = arena as *mut rk_model;
        Ok(())
    })();
    report(r, err)
}

/// End a model's life: the handle is invalidated (later calls with it fail with -12) and the
/// arena is the caller's again. Nothing is freed: the library never allocated. NULL or an
/// invalid handle is ignored.
///
/// # Safety
/// `model` must be NULL or point to memory that may hold a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_model_deinit(model: *mut rk_model) {
    // SAFETY: validated by `model`.
    if let Ok(m) = unsafe { self::model(model) } {
        m.0.tag = Tag { magic: 0, at: 0 };
    }
}

/// Run `f` on the valid handle `m`, reporting errors to `err`.
///
/// # Safety
/// As for [`model`].
pub(crate) unsafe fn with_model(
    m: *mut rk_model,
    err: *mut rk_error,
    f: impl FnOnce(&mut rk_model) -> Result<()>,
) -> rk_status {
    // SAFETY: the caller's promise about `m`.
    let m = match unsafe { model(m) } {
        Ok(m) => m,
        Err(e) => return report(Err(e), err),
    };
    // Details are never written into the arena: an `err` inside it is refused unwritten.
    if let Err(e) = m.outside(err as usize, size_of::<rk_error>(), "err") {
        return e.code();
    }
    report(f(m), err)
}

/// Draw every parameter from PyTorch's default initialisation with `seed` (state_dict order).
///
/// # Safety
/// `model` must be a handle from `rk_model_init` (anything else is rejected if detectable).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_init_params(model: *mut rk_model, seed: u64, err: *mut rk_error) -> rk_status {
    // SAFETY: see above.
    unsafe {
        with_model(model, err, |m| {
            m.net().init_params(seed);
            Ok(())
        })
    }
}

/// `rk_set_kernels`: the fastest gemm kernels this CPU has (the default).
pub const RK_KERNELS_AUTO: u32 = 0;
/// `rk_set_kernels`: the portable gemm kernel on every target, so that a host computes exactly
/// the bits a Cortex-M computes running the same calls.
pub const RK_KERNELS_PORTABLE: u32 = 1;

/// Run every product of the model on `kernels` (`RK_KERNELS_AUTO` or `RK_KERNELS_PORTABLE`)
/// from now on. Errors: -1 for another value.
///
/// # Safety
/// `model` must be a handle from `rk_model_init`; `err` may be NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_set_kernels(model: *mut rk_model, kernels: u32, err: *mut rk_error) -> rk_status {
    // SAFETY: see above.
    unsafe {
        with_model(model, err, |m| {
            let k = match kernels {
                RK_KERNELS_AUTO => regkern_core::Kernels::Auto,
                RK_KERNELS_PORTABLE => regkern_core::Kernels::Portable,
                _ => {
                    return Err(Error::BadConfig {
                        field: "kernels",
                        reason: "must be RK_KERNELS_AUTO or RK_KERNELS_PORTABLE",
                    });
                }
            };
            m.net().set_kernels(k);
            Ok(())
        })
    }
}

/// Use sequences of `seq_len` tokens (the source, for encoder-decoders) from now on; the default
/// is `max_seq_len`. Errors: -1 if 0 or above `max_seq_len`.
///
/// # Safety
/// `model` must be a handle from `rk_model_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_set_seq_len(
    model: *mut rk_model,
    seq_len: usize,
    err: *mut rk_error,
) -> rk_status {
    // SAFETY: see above.
    unsafe { with_model(model, err, |m| m.net().set_seq_len(seq_len)) }
}

/// Encoder-decoders: decode / train on targets of `target_len` tokens (default `max_seq_len`).
/// Errors: -1 for another model type, 0, or above `max_seq_len`.
///
/// # Safety
/// `model` must be a handle from `rk_model_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_set_target_len(
    model: *mut rk_model,
    target_len: usize,
    err: *mut rk_error,
) -> rk_status {
    // SAFETY: see above.
    unsafe { with_model(model, err, |m| m.net().set_target_len(target_len)) }
}

/// The model's sizes at its current sequence lengths.
///
/// # Safety
/// `model` must be a handle from `rk_model_init`; `out` a writable `rk_dims`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_model_dims(
    model: *mut rk_model,
    out: *mut rk_dims,
    err: *mut rk_error,
) -> rk_status {
    // SAFETY: see above.
    unsafe {
        with_model(model, err, |m| {
            let out = out_ref(out, "out")?;
            let net = m.net_ref();
            let md = net.model();
            *out = rk_dims {
                in_len: net.in_len() as u64,
                out_len: net.out_len() as u64,
                in_dim: md.in_dim() as u64,
                out_dim: md.out_dim() as u64,
                seq_len: net.seq_len() as u64,
                target_len: net.target_len() as u64,
                max_seq_len: md.max_seq_len() as u64,
                max_batch: md.mode().max_batch() as u64,
                param_tensors: md.param_count() as u64,
                param_floats: md.param_floats() as u64,
                training: u8::from(md.mode().is_training()),
            };
            Ok(())
        })
    }
}

/// The parameters: `*data` points at the model's parameter buffer inside the arena (`*len`
/// floats); tensor `i` lies at `rk_param_info(i).offset`. Writing them (e.g. to load weights)
/// is allowed between calls.
///
/// # Safety
/// `model` must be a handle from `rk_model_init`; `data` and `len` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_params(
    model: *mut rk_model,
    data: *mut *mut f32,
    len: *mut usize,
    err: *mut rk_error,
) -> rk_status {
    // SAFETY: see above.
    unsafe {
        with_model(model, err, |m| {
            let (data, len) = (out_ref(data, "data")?, out_ref(len, "len")?);
            let p = m.net().params_mut();
            (*data, *len) = (p.as_mut_ptr(), p.len());
            Ok(())
        })
    }
}

/// Row `index` of the parameter table (0 ≤ index < `rk_dims.param_tensors`), in PyTorch
/// `state_dict` order. Errors: -2 index out of range.
///
/// # Safety
/// `model` must be a handle from `rk_model_init`; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rk_param_info(
    model: *mut rk_model,
    index: usize,
    out: *mut rk_tensor_info,
    err: *mut rk_error,
) -> rk_status {
    // SAFETY: see above.
    unsafe {
        with_model(model, err, |m| {
            let out = out_ref(out, "out")?;
            let md = m.net_ref().model();
            let p = md.param(index).ok_or(Error::BadLen {
                what: "index",
                expected: md.param_count(),
                got: index,
            })?;
            let shape = p.shape();
            let mut info = rk_tensor_info {
                name: [0; 96],
                rank: shape.len() as u32,
                shape: [shape[0] as u64, shape.get(1).map_or(0, |&d| d as u64)],
                offset: p.slot.offset as u64,
                len: p.slot.len as u64,
            };
            c_string(&mut info.name, p.name.as_str());
            *out = info;
            Ok(())
        })
    }
}
