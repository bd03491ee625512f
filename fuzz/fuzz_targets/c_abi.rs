//! Sequences of C ABI calls on one arena, as a C program might make them: a fuzzed config and
//! mode, planned and (when small enough) initialised, then up to 48 calls in any order with
//! lengths right, short or long, sequence lengths in and out of range, checkpoints saved,
//! corrupted and loaded, schedules of any values, copies of the handle, deinit and re-init.
//! Every call must return a status (never panic), keep its contract (a failed load or step
//! changes nothing, a copied handle is refused), and write nothing outside the arena and the
//! buffers it is given. The harness itself never lies about a buffer's length.
#![no_main]

use core::ptr::{null, null_mut};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use regkern::*;

/// Largest arena built (1 MiB).
const MAX_ARENA: u64 = 1 << 20;

fn small(u: &mut Unstructured, max: u32) -> Result<u32> {
    Ok(if u.ratio(1, 16)? { u.arbitrary()? } else { u.int_in_range(0..=max)? })
}

fn float(u: &mut Unstructured) -> Result<f32> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => 1e-2,
        1 => u.int_in_range(0..=100u8)? as f32 / 50.0,
        2 => -1.0,
        _ => f32::from_bits(u.arbitrary()?),
    })
}

fn config(u: &mut Unstructured) -> Result<rk_model_config> {
    let kind = small(u, 5)?;
    let mut c = rk_model_config_default(kind);
    // SAFETY (union writes): `kind` names the member; every member is plain integers and floats.
    unsafe {
        match kind {
            1 => c.u.linear = rk_linear_config { n_in: small(u, 6)?, n_out: small(u, 3)? },
            2 => {
                let m = &mut c.u.mlp;
                (m.n_in, m.n_hidden, m.n_out, m.act) =
                    (small(u, 6)?, small(u, 4)?, small(u, 3)?, small(u, 3)?);
                for d in &mut m.latent_dims {
                    *d = small(u, 12)?;
                }
            }
            3 | 4 => {
                let s = if kind == 3 { &mut c.u.transformer.stack } else { &mut c.u.encdec.stack };
                s.input_dim = small(u, 3)?;
                s.output_dim = small(u, 3)?;
                s.embed_dim = small(u, 16)?;
                s.ffn_dim = small(u, 16)?;
                s.num_heads = small(u, 4)?;
                s.num_groups = small(u, 4)?;
                s.attention = small(u, 3)?;
                s.max_seq_len = small(u, 8)?;
                s.ffn_act = small(u, 3)?;
                s.kv_cache = small(u, 4)?;
                s.moe = u.arbitrary::<u8>()? & 1;
                s.num_experts = small(u, 4)?;
                s.topk = small(u, 3)?;
                s.capacity = small(u, 4)?;
                s.capacity_factor = float(u)?;
                s.alpha = float(u)?;
                if kind == 3 {
                    c.u.transformer.num_layers = small(u, 2)?;
                    c.u.transformer.autoregressive = u.arbitrary::<u8>()? & 1;
                } else {
                    c.u.encdec.num_encoder_layers = small(u, 2)?;
                    c.u.encdec.num_decoder_layers = small(u, 2)?;
                }
            }
            _ => {}
        }
    }
    Ok(c)
}

fn mode(u: &mut Unstructured) -> Result<rk_mode> {
    let mut optimizer = rk_optimizer_default(small(u, 4)?, float(u)?);
    if u.arbitrary()? {
        optimizer.momentum = float(u)?;
        optimizer.weight_decay = float(u)?;
        optimizer.beta1 = float(u)?;
        optimizer.eps = float(u)?;
        optimizer.nesterov = u.arbitrary()?;
        optimizer.centered = u.arbitrary()?;
    }
    Ok(rk_mode {
        training: u.arbitrary::<u8>()? & 1,
        max_batch: small(u, 3)?,
        optimizer,
        seq_len: small(u, 8)?,
        lean_memory: u.arbitrary::<u8>()? & 1,
    })
}

/// A length near `right`: right, one off, zero, or anything up to `cap` (the real buffer's).
fn len(u: &mut Unstructured, right: usize, cap: usize) -> Result<usize> {
    let l = match u.int_in_range(0..=7u8)? {
        0..=4 => right,
        5 => right.saturating_sub(1),
        6 => right + 1,
        _ => u.int_in_range(0..=cap)?,
    };
    Ok(l.min(cap))
}

fn dims(m: *mut rk_model) -> rk_dims {
    let mut d = rk_dims::default();
    // SAFETY: `m` is a live handle; `d` a valid struct.
    assert_eq!(unsafe { rk_model_dims(m, &mut d, null_mut()) }, RK_OK, "dims of a live model");
    d
}

fn params(m: *mut rk_model) -> Vec<f32> {
    let (mut p, mut n) = (null_mut(), 0usize);
    // SAFETY: a live handle; the returned slice lives in its arena.
    unsafe {
        assert_eq!(rk_params(m, &mut p, &mut n, null_mut()), RK_OK);
        core::slice::from_raw_parts(p, n).to_vec()
    }
}

fn run(u: &mut Unstructured) -> Result<()> {
    let (cfg, md) = (config(u)?, mode(u)?);
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        // SAFETY: the member `kind` names (any bits are valid in each).
        unsafe {
            match cfg.kind {
                1 => eprintln!("linear {:?}", (cfg.u.linear.n_in, cfg.u.linear.n_out)),
                2 => eprintln!(
                    "mlp {:?}",
                    (cfg.u.mlp.n_in, cfg.u.mlp.n_hidden, cfg.u.mlp.latent_dims, cfg.u.mlp.n_out)
                ),
                3 => eprintln!("transformer layers {}", cfg.u.transformer.num_layers),
                _ => eprintln!("kind {}", cfg.kind),
            }
        }
        eprintln!(
            "training {} max_batch {} optimizer {} lr {}",
            md.training, md.max_batch, md.optimizer.kind, md.optimizer.lr
        );
    }
    let mut plan = rk_plan::default();
    let mut err: rk_error = unsafe { core::mem::zeroed() };
    // SAFETY: valid structs.
    if unsafe { rk_model_plan(&cfg, &md, &mut plan, &mut err) } != RK_OK {
        assert!(err.code < 0, "a failed plan left err at {}", err.code);
        return Ok(());
    }
    if plan.total_bytes > MAX_ARENA {
        return Ok(());
    }
    let bytes = plan.total_bytes as usize;
    // The arena (u64s: 8-aligned) with 64 guard bytes on each side.
    let mut mem = vec![0xA5A5_A5A5_A5A5_A5A5u64; bytes.div_ceil(8) + 16];
    let arena = unsafe { (mem.as_mut_ptr() as *mut u8).add(64) };
    let mut m: *mut rk_model = null_mut();
    let short = if u.ratio(1, 8)? { u.int_in_range(1..=bytes.max(1))? } else { 0 };
    // SAFETY: `arena` holds `bytes` writable bytes.
    let st = unsafe { rk_model_init(&cfg, &md, arena, bytes - short.min(bytes), &mut m, &mut err) };
    if short > 0 {
        assert_eq!(st, RK_E_ARENA_TOO_SMALL, "an arena {short} bytes short");
        return Ok(());
    }
    assert_eq!(st, RK_OK, "a planned config must initialise: {}", msg(&err));
    let training = md.training != 0;
    let mut saved: Vec<u8> = Vec::new();
    let mut copy: Vec<u64> = Vec::new();
    for _ in 0..u.int_in_range(1..=48u8)? {
        let d = dims(m);
        let (in_len, out_len) = (d.in_len as usize, d.out_len as usize);
        let n = u.int_in_range(0..=d.max_batch as usize + 1)?;
        let x: Vec<f32> = (0..n * in_len).map(|i| ((i % 9) as f32 - 4.0) / 5.0).collect();
        let y: Vec<f32> = (0..n * out_len).map(|i| ((i % 4) as f32 - 1.5) / 2.0).collect();
        let mut out = vec![0.0f32; n * out_len + 2];
        // SAFETY (every call): `m` is a live handle and each buffer holds at least the length
        // passed with it.
        unsafe {
            match u.int_in_range(0..=14u8)? {
                0 => assert_eq!(rk_init_params(m, u.arbitrary()?, &mut err), RK_OK),
                1 => {
                    let (xl, ol) = (len(u, x.len(), x.len())?, len(u, n * out_len, out.len())?);
                    let _ = rk_predict(m, x.as_ptr(), xl, out.as_mut_ptr(), ol, &mut err);
                }
                2 => {
                    let before = params(m);
                    let (xl, yl) = (len(u, x.len(), x.len())?, len(u, y.len(), y.len())?);
                    let mut info = rk_step_info::default();
                    let st = rk_train_step(m, x.as_ptr(), xl, y.as_ptr(), yl, &mut info, &mut err);
                    assert_eq!(st == RK_E_NOT_TRAINABLE, !training && st != RK_OK, "{}", msg(&err));
                    if st != RK_OK {
                        assert!(
                            same(&params(m), &before),
                            "a failed step changed the parameters: {st} {}",
                            msg(&err)
                        );
                    }
                }
                3 => {
                    let mut loss = 0.0f32;
                    let _ = rk_eval_loss(m, x.as_ptr(), x.len(), y.as_ptr(), y.len(), &mut loss, &mut err);
                }
                4 => {
                    let _ = rk_set_seq_len(m, small(u, 10)? as usize, &mut err);
                }
                5 => {
                    let _ = rk_set_target_len(m, small(u, 10)? as usize, &mut err);
                }
                6 => {
                    let positions = u.int_in_range(0..=d.max_seq_len as usize + 1)?;
                    let (steps, window) = (small(u, 10)? as usize, small(u, 9)? as usize);
                    let seqs = u.int_in_range(0..=2usize)?;
                    let prompt = vec![0.25f32; seqs * positions * d.in_dim as usize];
                    let mut generated = vec![0.0f32; (seqs * steps * d.out_dim as usize).min(1 << 16)];
                    let gl = len(u, generated.len(), generated.len())?;
                    let cache = u.arbitrary::<u8>()? & 1;
                    let _ = rk_generate(
                        m,
                        prompt.as_ptr(),
                        prompt.len(),
                        positions,
                        generated.as_mut_ptr(),
                        gl,
                        steps,
                        window,
                        cache,
                        &mut err,
                    );
                }
                7 => {
                    let state = u.arbitrary::<u8>()? & 1;
                    let mut size = 0usize;
                    if rk_checkpoint_size(m, state, &mut size, &mut err) == RK_OK {
                        let mut buf = vec![0u8; size];
                        let bl = len(u, size, size)?;
                        let mut written = 0usize;
                        if rk_checkpoint_save(m, state, buf.as_mut_ptr(), bl, &mut written, &mut err) == RK_OK
                        {
                            assert!(written <= bl, "wrote {written} of {bl} bytes");
                            buf.truncate(written);
                            saved = buf;
                        }
                    }
                }
                8 => {
                    let mut buf = saved.clone();
                    for _ in 0..u.int_in_range(0..=3u8)? {
                        if !buf.is_empty() {
                            let at = u.int_in_range(0..=buf.len() - 1)?;
                            buf[at] = u.arbitrary()?;
                        }
                    }
                    let bl = len(u, buf.len(), buf.len())?;
                    let before = params(m);
                    let st = rk_checkpoint_load(m, buf.as_ptr(), bl, u.arbitrary::<u8>()? & 1, &mut err);
                    if st != RK_OK {
                        assert!(same(&params(m), &before), "a failed load changed the parameters");
                    }
                    let mut back = rk_model_config_default(0);
                    let _ = rk_checkpoint_config(buf.as_ptr(), bl, &mut back, &mut err);
                }
                9 => {
                    let s = rk_schedule {
                        kind: small(u, 6)?,
                        step_size: small(u, 4)?,
                        gamma: float(u)?,
                        min_lr: float(u)?,
                        warmup_steps: small(u, 4)?,
                        steps_per_epoch: small(u, 4)?,
                        total_steps: small(u, 8)? as u64,
                        clip_grad_norm: float(u)?,
                    };
                    let _ = rk_set_schedule(m, &s, &mut err);
                }
                10 => {
                    let mut t: rk_tensor_info = core::mem::zeroed();
                    let i = u.int_in_range(0..=d.param_tensors as usize)?;
                    let st = rk_param_info(m, i, &mut t, &mut err);
                    assert_eq!(st == RK_OK, i < d.param_tensors as usize);
                }
                11 => {
                    let _ = rk_set_kernels(m, small(u, 2)?, &mut err);
                }
                12 => {
                    // A copy of the arena elsewhere is refused, and changes nothing.
                    copy.clear();
                    copy.extend_from_slice(&mem);
                    let c = (copy.as_mut_ptr() as *mut u8).add(64) as *mut rk_model;
                    let st = rk_predict(c, x.as_ptr(), x.len(), out.as_mut_ptr(), n * out_len, &mut err);
                    assert_eq!(st, RK_E_BAD_POINTER, "a copied handle was accepted");
                    rk_model_deinit(c);
                }
                13 => {
                    rk_model_deinit(m);
                    assert_eq!(rk_init_params(m, 1, null_mut()), RK_E_BAD_POINTER, "a dead handle was used");
                    let st = rk_model_init(&cfg, &md, arena, bytes, &mut m, &mut err);
                    assert_eq!(st, RK_OK, "re-init: {}", msg(&err));
                }
                _ => {
                    let _ = rk_predict(m, null(), x.len(), out.as_mut_ptr(), n * out_len, &mut err);
                    let _ = rk_train_step(m, x.as_ptr(), x.len(), null(), y.len(), null_mut(), null_mut());
                }
            }
        }
        assert!(
            mem[..8].iter().chain(&mem[mem.len() - 8..]).all(|&g| g == 0xA5A5_A5A5_A5A5_A5A5),
            "a guard was overwritten"
        );
    }
    // SAFETY: a live handle.
    unsafe { rk_model_deinit(m) };
    Ok(())
}

fn msg(err: &rk_error) -> String {
    let bytes: Vec<u8> = err.message.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

/// Bit for bit (parameters may hold infinities or NaN after a diverging step).
fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}
