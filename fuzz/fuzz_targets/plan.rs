//! Config → plan → init → one step, on arbitrary configs (sizes anywhere in `usize`, counts of
//! layers and experts up to 2⁶⁴ − 1, NaN learning rates): planning must answer at once, refuse
//! what it cannot size, and every plan small enough to build (the cap below) must build, run a
//! forward pass and a training step, or refuse them with an error. No panic, hang or overflow.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use regkern_core::layers::KvDtype;
use regkern_core::{
    Activation, AttentionType, Capacity, EncoderDecoderConfig, LinearConfig, Memory, MlpConfig, Mode, Model,
    ModelConfig, MoeConfig, Net, Optimizer, Schedule, TrainConfig, Trainer, TransformerConfig,
};

/// Floats of the largest arena built (256 KiB), so one input runs in milliseconds.
const MAX_FLOATS: usize = 1 << 16;

/// A size as users and attackers give them: mostly small, sometimes anything.
fn size(u: &mut Unstructured) -> Result<usize> {
    Ok(match u.int_in_range(0..=7u8)? {
        0..=3 => u.int_in_range(0..=6)?,
        4 | 5 => u.int_in_range(0..=40)?,
        6 => u.arbitrary::<u32>()? as usize,
        _ => u.arbitrary()?,
    })
}

fn pick<T: Copy>(u: &mut Unstructured, of: &[T]) -> Result<T> {
    Ok(*u.choose(of)?)
}

fn float(u: &mut Unstructured) -> Result<f32> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => 1e-2,
        1 => u.int_in_range(0..=100u8)? as f32 / 50.0,
        _ => f32::from_bits(u.arbitrary()?),
    })
}

fn stack(u: &mut Unstructured, autoregressive: bool) -> Result<TransformerConfig> {
    let moe = if u.arbitrary()? {
        let capacity =
            if u.arbitrary()? { Capacity::Absolute(size(u)?) } else { Capacity::Factor(float(u)?) };
        Some(MoeConfig { num_experts: size(u)?, top_k: size(u)?, capacity, alpha: float(u)? })
    } else {
        None
    };
    Ok(TransformerConfig {
        input_dim: size(u)?,
        output_dim: size(u)?,
        embed_dim: size(u)?,
        ffn_dim: size(u)?,
        num_layers: size(u)?,
        num_heads: size(u)?,
        num_groups: size(u)?,
        attention: pick(u, &[AttentionType::Mha, AttentionType::Mqa, AttentionType::Gqa])?,
        max_seq_len: size(u)?,
        ffn_act: pick(u, &[Activation::Relu, Activation::Tanh, Activation::Gelu])?,
        autoregressive,
        kv_cache: pick(u, &[None, Some(KvDtype::F32), Some(KvDtype::F16), Some(KvDtype::Bf16)])?,
        moe,
    })
}

fn config(u: &mut Unstructured) -> Result<ModelConfig> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => ModelConfig::Linear(LinearConfig { n_in: size(u)?, n_out: size(u)? }),
        1 => {
            let mut latent_dims = heapless::Vec::new();
            for _ in 0..u.int_in_range(0..=latent_dims.capacity())? {
                let _ = latent_dims.push(size(u)?);
            }
            let act = pick(u, &[Activation::Relu, Activation::Tanh, Activation::Gelu])?;
            ModelConfig::Mlp(MlpConfig { n_in: size(u)?, latent_dims, n_out: size(u)?, act })
        }
        2 => {
            let autoregressive = u.arbitrary()?;
            ModelConfig::Transformer(stack(u, autoregressive)?)
        }
        _ => {
            let t = stack(u, false)?;
            ModelConfig::EncoderDecoder(EncoderDecoderConfig::from_stack(&t, size(u)?, size(u)?))
        }
    })
}

fn optimizer(u: &mut Unstructured) -> Result<Optimizer> {
    let lr = float(u)?;
    let mut o = pick(u, &[Optimizer::adam(lr), Optimizer::sgd(lr), Optimizer::rmsprop(lr)])?;
    if u.arbitrary()? {
        match &mut o {
            Optimizer::Sgd(s) => {
                (s.momentum, s.dampening, s.weight_decay, s.nesterov) =
                    (float(u)?, float(u)?, float(u)?, u.arbitrary()?)
            }
            Optimizer::Adam(a) => {
                (a.beta1, a.beta2, a.eps, a.weight_decay) = (float(u)?, float(u)?, float(u)?, float(u)?)
            }
            Optimizer::RmsProp(r) => {
                (r.alpha, r.eps, r.momentum, r.centered) = (float(u)?, float(u)?, float(u)?, u.arbitrary()?)
            }
        }
    }
    Ok(o)
}

fn run(u: &mut Unstructured) -> Result<()> {
    let cfg = config(u)?;
    let mode = if u.arbitrary()? {
        Mode::Training { max_batch: size(u)?, optimizer: optimizer(u)? }
    } else {
        Mode::Inference { max_batch: size(u)? }
    };
    let seq_len = size(u)?;
    let memory = pick(u, &[Memory::Fast, Memory::Lean])?;
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        eprintln!("{cfg:?}\n{mode:?} seq_len {seq_len} {memory:?}");
    }
    let Ok(model) = Model::plan_with(&cfg, mode, seq_len, memory) else { return Ok(()) };
    let report = model.report();
    let floats = report.total_floats();
    assert!(report.total_bytes().is_ok(), "a plan whose bytes overflow was accepted");
    assert!(model.param_floats() <= floats, "parameters outside the arena");
    if floats > MAX_FLOATS {
        return Ok(());
    }
    // One float short is refused; the exact arena builds.
    if floats > 0 {
        let mut short = vec![0.0f32; floats - 1];
        assert!(Net::new(model.clone(), &mut short).is_err(), "an arena one float short was accepted");
    }
    let mut arena = vec![0.0f32; floats];
    let mut net = Net::new(model, &mut arena).expect("the planned arena builds");
    net.init_params(u.arbitrary()?);
    let max_batch = match mode {
        Mode::Training { max_batch, .. } | Mode::Inference { max_batch } => max_batch,
    };
    let n = u.int_in_range(0..=max_batch.min(4))?;
    let (in_len, out_len) = (net.in_len(), net.out_len());
    let x: Vec<f32> = (0..n * in_len).map(|i| ((i % 7) as f32 - 3.0) / 4.0).collect();
    let y: Vec<f32> = (0..n * out_len).map(|i| ((i % 5) as f32 - 2.0) / 3.0).collect();
    let mut out = vec![0.0f32; n * out_len];
    let _ = net.predict(&x, &mut out);
    if let Mode::Training { optimizer, .. } = mode {
        let config = TrainConfig { epochs: 1, schedule: Schedule::Constant, clip_grad_norm: None };
        if let Ok(mut trainer) = Trainer::new(net, optimizer, config) {
            let before = trainer.net().params().to_vec();
            if trainer.train_step(&x, &y).is_err() {
                assert!(same(trainer.net().params(), &before), "a failed step changed the parameters");
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

/// Bit for bit (parameters may hold infinities or NaN after a diverging step).
fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}
