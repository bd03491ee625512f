//! The arena: plans are exact and used exactly.
//!
//! For many configs: an arena of exactly the planned floats works, one float less is
//! `ArenaTooSmall { needed, got }` in bytes, and training and inference never touch a float past
//! the plan (canaries after it survive). Exact bytes are pinned for a few configs: plans are
//! deterministic, so a change in them must be deliberate (update the pin and say why).

use regkern_core::layers::KvDtype;
use regkern_core::models::{Context, Generate};
use regkern_core::optim::{RmsProp, Sgd};
use regkern_core::testing::lcg_fill;
use regkern_core::{
    Activation, AttentionType, Error, LinearConfig, Memory, Mode, Model, ModelConfig, Net, Optimizer, Region,
    Schedule, TrainConfig, Trainer, TransformerConfig,
};
use regkern_core::{Capacity, EncoderDecoderConfig, MoeConfig};
use regkern_tests::mlp;

/// Configs with the modes and the sequence length to plan for: every other transformer is planned
/// for fewer tokens than its `max_seq_len` (`Model::plan_for`), and every third training plan is
/// lean (`Memory::Lean`: no attention probabilities kept).
fn configs() -> Vec<(ModelConfig, Mode, usize, Memory)> {
    let sgd_m =
        Optimizer::Sgd(Sgd { lr: 0.1, momentum: 0.9, dampening: 0.0, weight_decay: 0.0, nesterov: false });
    let rms_c = Optimizer::RmsProp(RmsProp {
        lr: 0.01,
        alpha: 0.99,
        eps: 1e-8,
        weight_decay: 0.0,
        momentum: 0.9,
        centered: true,
    });
    let optimizers = [Optimizer::adam(1e-3), Optimizer::sgd(0.1), sgd_m, Optimizer::rmsprop(0.01), rms_c];
    let models = [
        ModelConfig::Linear(LinearConfig { n_in: 8, n_out: 1 }),
        ModelConfig::Linear(LinearConfig { n_in: 3, n_out: 5 }),
        mlp(8, &[128, 64, 32], 1, Activation::Relu),
        mlp(8, &[17], 3, Activation::Tanh),
        mlp(2, &[5, 9, 1, 33], 4, Activation::Gelu),
        mlp(1, &[1], 1, Activation::Relu),
        transformer(AttentionType::Gqa, 8, 4, 6),
        transformer(AttentionType::Mha, 4, 4, 5),
        transformer(AttentionType::Mqa, 2, 1, 1),
        autoregressive(transformer(AttentionType::Gqa, 4, 2, 7), Some(KvDtype::F16)),
        autoregressive(transformer(AttentionType::Mha, 2, 2, 3), Some(KvDtype::Bf16)),
        autoregressive(transformer(AttentionType::Mqa, 2, 1, 5), None),
        with_moe(transformer(AttentionType::Gqa, 4, 2, 6), Capacity::Factor(1.25)),
        with_moe(transformer(AttentionType::Mha, 2, 2, 3), Capacity::Absolute(2)),
        with_moe(
            autoregressive(transformer(AttentionType::Gqa, 4, 2, 7), Some(KvDtype::F32)),
            Capacity::Factor(0.5),
        ),
        encdec(transformer(AttentionType::Gqa, 4, 2, 6), (2, 1), Some(KvDtype::F16)),
        encdec(transformer(AttentionType::Mha, 2, 2, 3), (1, 2), None),
        encdec(transformer(AttentionType::Mqa, 2, 1, 5), (1, 1), Some(KvDtype::Bf16)),
        encdec(
            with_moe(transformer(AttentionType::Gqa, 4, 2, 7), Capacity::Factor(1.0)),
            (2, 2),
            Some(KvDtype::F32),
        ),
    ];
    let mut out = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let max_seq = m.max_seq_len();
        let seq = if i % 2 == 1 && max_seq > 1 { max_seq - 1 } else { max_seq };
        for (j, &optimizer) in optimizers.iter().enumerate() {
            let max_batch = [1, 7, 64, 33][(i + j) % 4];
            let memory = if (i + j) % 3 == 0 { Memory::Lean } else { Memory::Fast };
            out.push((m.clone(), Mode::Training { max_batch, optimizer }, seq, memory));
        }
        out.push((m.clone(), Mode::Inference { max_batch: 1 + 10 * i }, seq, Memory::Fast));
    }
    out
}

/// A small transformer; sequences use its whole `max_seq_len` (the largest activations).
fn transformer(attention: AttentionType, heads: usize, groups: usize, max_seq_len: usize) -> ModelConfig {
    ModelConfig::Transformer(TransformerConfig {
        input_dim: 2,
        output_dim: 3,
        embed_dim: 8 * heads / 2,
        ffn_dim: 12,
        num_layers: 2,
        num_heads: heads,
        num_groups: groups,
        attention,
        max_seq_len,
        ffn_act: Activation::Gelu,
        autoregressive: false,
        kv_cache: None,
        moe: None,
    })
}

/// The same transformer predicting every next value, with a KV cache of the given type.
fn autoregressive(cfg: ModelConfig, kv_cache: Option<KvDtype>) -> ModelConfig {
    let ModelConfig::Transformer(t) = cfg else { unreachable!("built by transformer()") };
    ModelConfig::Transformer(TransformerConfig {
        autoregressive: true,
        kv_cache,
        input_dim: 3,
        output_dim: 3,
        ..t
    })
}

/// The same transformer with Mixture-of-Experts FFNs (3 experts, top-2).
fn with_moe(cfg: ModelConfig, capacity: Capacity) -> ModelConfig {
    let ModelConfig::Transformer(t) = cfg else { unreachable!("built by transformer()") };
    let moe = MoeConfig { num_experts: 3, top_k: 2, capacity, alpha: 0.01 };
    ModelConfig::Transformer(TransformerConfig { moe: Some(moe), ..t })
}

/// The same stacks as an encoder-decoder of (encoder, decoder) blocks, 2 features in, 3 out,
/// with caches of the given type for greedy decoding.
fn encdec(cfg: ModelConfig, (enc, dec): (usize, usize), kv_cache: Option<KvDtype>) -> ModelConfig {
    let ModelConfig::Transformer(t) = cfg else { unreachable!("built by transformer()") };
    ModelConfig::EncoderDecoder(regkern_core::EncoderDecoderConfig::from_stack(
        &TransformerConfig { kv_cache, ..t },
        enc,
        dec,
    ))
}

const CANARY: f32 = -1234.5;
const GUARD: usize = 64;

#[test]
fn plan_equals_bytes_used_for_many_configs() {
    let configs = configs();
    assert!(configs.len() >= 20, "{} configs", configs.len());
    let lean = configs.iter().filter(|c| c.3 == Memory::Lean && c.0.max_seq_len() > 1).count();
    assert!(lean >= 10, "{lean} lean transformer configs");
    for (cfg, mode, seq, memory) in configs {
        let model = Model::plan_with(&cfg, mode, seq, memory).unwrap();
        assert_eq!(model.max_seq_len(), seq);
        let floats = model.report().total_floats();
        assert_eq!(model.report().total_bytes().unwrap(), floats * 4);
        // One float short fails, and says how many bytes it needed.
        let mut short = vec![0.0f32; floats - 1];
        let err = Net::new(model.clone(), &mut short).unwrap_err();
        assert_eq!(
            err,
            Error::ArenaTooSmall { needed: floats * 4, got: (floats - 1) * 4 },
            "{cfg:?} {mode:?}"
        );
        // Exactly the plan works; canaries past it survive training and inference.
        let mut arena = vec![CANARY; floats + GUARD];
        let mut net = Net::new(model.clone(), &mut arena).unwrap();
        net.init_params(1);
        let n = mode.max_batch();
        let (mut x, mut y) = (vec![0.0; n * model.in_len()], vec![0.0; n * model.out_len()]);
        lcg_fill(&mut x, &mut 5);
        lcg_fill(&mut y, &mut 6);
        if let Mode::Training { optimizer, .. } = mode {
            let config = TrainConfig { epochs: 1, schedule: Schedule::Constant, clip_grad_norm: Some(1.0) };
            let mut trainer = Trainer::new(net, optimizer, config).unwrap();
            for _ in 0..3 {
                trainer.train_step(&x, &y).unwrap();
            }
            net = trainer.into_net();
        }
        // An encoder-decoder decodes greedily here: max_seq_len steps fill its caches.
        let mut out = vec![0.0; n * model.out_len()];
        net.predict(&x, &mut out).unwrap();
        assert!(out.iter().all(|v| v.is_finite()));
        if let ModelConfig::Transformer(TransformerConfig { autoregressive: true, kv_cache, .. }) = cfg {
            // Fill the whole KV cache (the arena's last region): one prompt value, as many steps as
            // planned positions.
            let g = Generate { steps: seq, context: Context::Expanding, use_cache: kv_cache.is_some() };
            let mut gen_out = vec![0.0; n * seq * 3];
            net.generate(&x[..n * 3], 1, &mut gen_out, g).unwrap();
        }
        drop(net);
        assert!(arena[floats..].iter().all(|&v| v == CANARY), "{cfg:?} {mode:?} wrote past its plan");
    }
}

/// The compile-time sizes (`regkern_core::sizing`) equal the run-time plans for every config of
/// [`configs`]: every architecture, optimizer, mode and planned length.
#[test]
fn const_sizes_equal_the_plans() {
    use regkern_core::sizing;
    for (cfg, mode, seq, memory) in configs() {
        let planned = Model::plan_with(&cfg, mode, seq, memory).unwrap().report().total_floats();
        let sized = match &cfg {
            ModelConfig::Linear(c) => sizing::linear_floats(c.n_in, c.n_out, mode),
            ModelConfig::Mlp(c) => sizing::mlp_floats(c.n_in, &c.latent_dims, c.n_out, mode),
            ModelConfig::Transformer(c) => sizing::transformer_floats(c, mode, seq, memory),
            ModelConfig::EncoderDecoder(c) => sizing::encoder_decoder_floats(c, mode, seq, memory),
        };
        assert_eq!(sized, planned, "{cfg:?} {mode:?} seq {seq} {memory:?}");
        let model = Model::plan_with(&cfg, mode, seq, memory).unwrap();
        let table: usize = model.params().map(|p| p.slot.len).sum();
        assert_eq!(model.param_floats(), table, "{cfg:?}");
    }
    // And in a const: a firmware's static arena.
    const MODE: Mode = Mode::Training { max_batch: 4, optimizer: Optimizer::adam(1e-3) };
    const TINY: TransformerConfig = TransformerConfig {
        input_dim: 1,
        output_dim: 1,
        embed_dim: 16,
        ffn_dim: 32,
        num_layers: 1,
        num_heads: 4,
        num_groups: 2,
        attention: AttentionType::Gqa,
        max_seq_len: 8,
        ffn_act: Activation::Gelu,
        autoregressive: false,
        kv_cache: None,
        moe: None,
    };
    const FLOATS: usize = sizing::transformer_floats(&TINY, MODE, 8, Memory::Fast);
    static ARENA: [f32; FLOATS] = [0.0; FLOATS];
    let model = Model::plan(&ModelConfig::Transformer(TINY), MODE).unwrap();
    assert_eq!(ARENA.len(), model.report().total_floats());
}

#[test]
fn inference_plans_reserve_nothing_for_training() {
    let m =
        Model::plan(&mlp(8, &[128, 64, 32], 1, Activation::Relu), Mode::Inference { max_batch: 64 }).unwrap();
    for r in [Region::Grads, Region::OptState, Region::ActGrads] {
        assert_eq!(m.report().bytes(r), 0, "{r:?}");
    }
}

/// Exact bytes of the P1 workload (MLP 8→128→64→32→1, batch 64, Adam), per region.
#[test]
fn p1_bytes_are_pinned() {
    let cfg = mlp(8, &[128, 64, 32], 1, Activation::Relu);
    let train =
        Model::plan(&cfg, Mode::Training { max_batch: 64, optimizer: Optimizer::adam(1e-3) }).unwrap();
    let r = train.report();
    // params: 11,521 floats; each tensor padded to a multiple of 16 (the 1-float output bias → 16) → 11,536.
    assert_eq!(train.param_floats(), 11_521);
    assert_eq!(r.bytes(Region::Params), 46_144);
    assert_eq!(r.bytes(Region::Grads), 46_144);
    assert_eq!(r.bytes(Region::OptState), 2 * 46_144);
    // acts: input 64×8, target 64×1 (→ 64), pre and post of each hidden layer, the output 64×1.
    assert_eq!(r.bytes(Region::Acts), 4 * (512 + 64 + 2 * 64 * (128 + 64 + 32) + 64));
    assert_eq!(r.bytes(Region::ActGrads), 4 * (2 * 64 * (128 + 64 + 32) + 64));
    assert_eq!(r.bytes(Region::Scratch), 0);
    let infer = Model::plan(&cfg, Mode::Inference { max_batch: 64 }).unwrap();
    // acts: input 64×8 and two ping-pong buffers of 64×128.
    assert_eq!(infer.report().bytes(Region::Acts), 4 * (512 + 2 * 64 * 128));
    assert_eq!(infer.report().total_bytes().unwrap(), 46_144 + 4 * (512 + 2 * 64 * 128));
}

/// Planning is O(1) in the number of layers and experts: counts no machine could hold plan at
/// once (and overflow cleanly), and the plan of many layers is the plan of one layer repeated.
#[test]
fn planning_huge_layer_and_expert_counts_is_immediate() {
    let start = std::time::Instant::now();
    let base = TransformerConfig::default();
    let layers = |num_layers| ModelConfig::Transformer(TransformerConfig { num_layers, ..base });
    let experts = |num_experts| {
        let moe = Some(MoeConfig { num_experts, top_k: 1, capacity: Capacity::Factor(1.0), alpha: 0.0 });
        ModelConfig::Transformer(TransformerConfig { moe, ..base })
    };
    let train = Mode::Training { max_batch: 4, optimizer: Optimizer::adam(1e-3) };
    for mode in [Mode::Inference { max_batch: 4 }, train] {
        for cfg in [layers(10_000_000), experts(100_000_000), layers(u32::MAX as usize)] {
            let m = Model::plan(&cfg, mode).unwrap();
            assert!(m.report().total_bytes().unwrap() > 1 << 30, "{cfg:?}");
            assert!(m.param_count() > 1_000_000);
        }
        for cfg in [layers(1 << 60), experts(1 << 60), layers(usize::MAX)] {
            assert_eq!(Model::plan(&cfg, mode).unwrap_err(), Error::SizeOverflow, "{cfg:?}");
        }
        // Three layers take exactly what one layer's plan plus two more blocks take.
        let (one, three) = (Model::plan(&layers(1), mode).unwrap(), Model::plan(&layers(3), mode).unwrap());
        let two = Model::plan(&layers(2), mode).unwrap();
        let (r1, r2, r3) = (one.report(), two.report(), three.report());
        for region in Region::ALL {
            assert_eq!(r3.floats(region) - r2.floats(region), r2.floats(region) - r1.floats(region));
        }
    }
    assert!(start.elapsed().as_secs_f64() < 1.0, "planning took {:?}", start.elapsed());
}

/// Sequence lengths up to `usize::MAX` in every model with attention, fast and lean, inference
/// and training: a plan or `SizeOverflow`, never an overflow (the C ABI fuzz target found the
/// unchecked source × target tile of a lean encoder-decoder's cross-attention scratch).
#[test]
fn huge_sequence_lengths_plan_or_overflow() {
    let base =
        TransformerConfig { embed_dim: 8, ffn_dim: 8, num_heads: 2, num_groups: 1, ..Default::default() };
    let train = Mode::Training { max_batch: 2, optimizer: Optimizer::sgd(0.1) };
    for len in
        [1usize << 20, 1 << 31, 3 << 30, u32::MAX as usize, 1 << 32, 1 << 33, usize::MAX / 2, usize::MAX]
    {
        let cfg = TransformerConfig { max_seq_len: len, ..base };
        let models = [
            ModelConfig::Transformer(cfg),
            ModelConfig::Transformer(TransformerConfig { autoregressive: true, ..cfg }),
            ModelConfig::EncoderDecoder(EncoderDecoderConfig::from_stack(&cfg, 1, 1)),
        ];
        for model in &models {
            for mode in [Mode::Inference { max_batch: 2 }, train] {
                for memory in [Memory::Fast, Memory::Lean] {
                    for seq in [1, len / 2, len] {
                        if let Ok(m) = Model::plan_with(model, mode, seq.max(1), memory) {
                            assert!(m.report().total_bytes().is_ok());
                        }
                    }
                }
            }
        }
    }
}

/// Expert counts whose routing buffers (tokens × experts) overflow: `SizeOverflow`, in training,
/// inference and the KV-cached decode plan (found by the plan fuzz target at 2.2·10¹⁷ experts).
#[test]
fn huge_expert_counts_overflow_cleanly() {
    for experts in [1usize << 57, 217_219_206_733_084_599, usize::MAX / 3] {
        let moe =
            Some(MoeConfig { num_experts: experts, top_k: 3, capacity: Capacity::Absolute(1), alpha: 0.0 });
        let cfg = ModelConfig::Transformer(TransformerConfig {
            input_dim: 3,
            embed_dim: 3,
            ffn_dim: 3,
            num_heads: 3,
            num_groups: 3,
            max_seq_len: 3,
            autoregressive: true,
            kv_cache: Some(KvDtype::F32),
            moe,
            ..TransformerConfig::default()
        });
        for mode in [
            Mode::Inference { max_batch: 36 },
            Mode::Training { max_batch: 36, optimizer: Optimizer::adam(1e-3) },
        ] {
            assert_eq!(
                Model::plan(&cfg, mode).unwrap_err(),
                Error::SizeOverflow,
                "{experts} experts, {mode:?}"
            );
        }
    }
}

#[test]
fn bad_configs_are_errors_not_panics() {
    let moe = |num_experts, top_k, capacity, alpha| {
        let m = MoeConfig { num_experts, top_k, capacity, alpha };
        ModelConfig::Transformer(TransformerConfig { moe: Some(m), ..TransformerConfig::default() })
    };
    let bad = [
        moe(0, 1, Capacity::Factor(1.0), 0.0),
        moe(4, 0, Capacity::Factor(1.0), 0.0),
        moe(4, 5, Capacity::Factor(1.0), 0.0),
        moe(4, 2, Capacity::Absolute(0), 0.0),
        moe(4, 2, Capacity::Factor(0.0), 0.0),
        moe(4, 2, Capacity::Factor(1.0), -0.1),
        ModelConfig::Linear(LinearConfig { n_in: 0, n_out: 1 }),
        ModelConfig::Linear(LinearConfig { n_in: 1, n_out: 0 }),
        mlp(8, &[0], 1, Activation::Relu),
        mlp(8, &[4, 0, 4], 1, Activation::Relu),
        mlp(usize::MAX / 2, &[usize::MAX / 2], 1, Activation::Relu),
    ];
    for cfg in bad {
        assert!(Model::plan(&cfg, Mode::Inference { max_batch: 4 }).is_err(), "{cfg:?}");
    }
    let ok = mlp(8, &[4], 1, Activation::Relu);
    assert!(Model::plan(&ok, Mode::Inference { max_batch: 0 }).is_err());
    assert!(Model::plan(&ok, Mode::Training { max_batch: 4, optimizer: Optimizer::adam(-1.0) }).is_err());
    assert_eq!(Model::plan(&ok, Mode::Inference { max_batch: usize::MAX }).unwrap_err(), Error::SizeOverflow);
}

#[test]
fn wrong_lengths_and_batches_are_errors() {
    let model = Model::plan(
        &mlp(3, &[4], 2, Activation::Tanh),
        Mode::Training { max_batch: 4, optimizer: Optimizer::adam(1e-3) },
    )
    .unwrap();
    let mut arena = vec![0.0; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).unwrap();
    assert_eq!(
        net.loss_and_grads(&[0.0; 7], &[0.0; 4]).unwrap_err(),
        Error::BadLen { what: "x", expected: 6, got: 7 }
    );
    assert_eq!(
        net.loss_and_grads(&[0.0; 6], &[0.0; 3]).unwrap_err(),
        Error::BadLen { what: "y", expected: 4, got: 3 }
    );
    assert_eq!(
        net.loss_and_grads(&[0.0; 15], &[0.0; 10]).unwrap_err(),
        Error::BatchTooLarge { max: 4, got: 5 }
    );
    assert!(net.predict(&[], &mut []).is_err());
    let mut out = [0.0; 3];
    assert!(net.predict(&[0.0; 3], &mut out).is_err(), "out has room for 1.5 samples");
    // An inference plan cannot train.
    let model = Model::plan(&mlp(3, &[4], 2, Activation::Tanh), Mode::Inference { max_batch: 4 }).unwrap();
    let mut arena = vec![0.0; model.report().total_floats()];
    let net = Net::new(model, &mut arena).unwrap();
    let config = TrainConfig { epochs: 1, schedule: Schedule::Constant, clip_grad_norm: None };
    assert_eq!(Trainer::new(net, Optimizer::adam(1e-3), config).unwrap_err(), Error::NotTrainable);
}
