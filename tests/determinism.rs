//! Determinism: the same seed and config give bit-identical weights; another seed does not.
//! Also: a non-finite loss stops training at the step it happens, with the weights of the step before.

use regkern_core::{
    Activation, DataLoader, Error, Mode, Model, Net, Optimizer, Schedule, Synthetic, Task, TrainConfig,
    Trainer,
};
use regkern_tests::mlp;

fn train(seed: u64, epochs: usize) -> (Vec<f32>, f32) {
    let cfg = mlp(8, &[32, 16], 1, Activation::Gelu);
    let optimizer = Optimizer::adam(1e-3);
    let model = Model::plan(&cfg, Mode::Training { max_batch: 64, optimizer }).unwrap();
    let mut arena = vec![0.0; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).unwrap();
    net.init_params(seed);
    let (train, val) = Synthetic::split(Task::Nlinear, seed, 500, 100);
    let mut order = vec![0u32; 500];
    let mut loader = DataLoader::new(&mut order, 64, true, seed).unwrap();
    let config =
        TrainConfig { epochs, schedule: Schedule::Cosine { min_lr: 1e-5 }, clip_grad_norm: Some(5.0) };
    let mut trainer = Trainer::new(net, optimizer, config).unwrap();
    let summary = trainer.fit(&train, Some(&val), &mut loader, &mut ()).unwrap();
    (trainer.net().params().to_vec(), summary.final_val_loss.unwrap())
}

#[test]
fn same_seed_gives_bit_identical_weights() {
    let (a, la) = train(3, 4);
    let (b, lb) = train(3, 4);
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "weights differ between two runs");
    assert_eq!(la.to_bits(), lb.to_bits());
    let (c, _) = train(4, 4);
    assert_ne!(a, c, "another seed gave the same weights");
}

#[test]
fn non_finite_loss_stops_before_the_update() {
    let cfg = mlp(2, &[3], 1, Activation::Relu);
    let optimizer = Optimizer::sgd(0.1);
    let model = Model::plan(&cfg, Mode::Training { max_batch: 2, optimizer }).unwrap();
    let mut arena = vec![0.0; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).unwrap();
    net.init_params(0);
    let config = TrainConfig { epochs: 1, schedule: Schedule::Constant, clip_grad_norm: None };
    let mut trainer = Trainer::new(net, optimizer, config).unwrap();
    trainer.train_step(&[0.1, 0.2, 0.3, 0.4], &[1.0, 2.0]).unwrap();
    let before = trainer.net().params().to_vec();
    let err = trainer.train_step(&[0.1, f32::NAN, 0.3, 0.4], &[1.0, 2.0]).unwrap_err();
    assert_eq!(err, Error::NonFinite { step: 1, what: "loss" });
    assert_eq!(trainer.net().params(), &before[..], "a non-finite step changed the weights");
    let err = trainer.train_step(&[0.1, 0.2, 0.3, 0.4], &[f32::INFINITY, 2.0]).unwrap_err();
    assert_eq!(err, Error::NonFinite { step: 1, what: "loss" });
    assert_eq!(trainer.steps(), 1);
}

/// The gradient norm (f64, software on a Cortex-M4F) is computed only when a step clips or is
/// asked for it; measuring it changes nothing else.
#[test]
fn the_gradient_norm_is_measured_only_when_clipping_or_asked() {
    let run = |clip: Option<f32>, measure: bool| {
        let cfg = mlp(2, &[3], 1, Activation::Relu);
        let optimizer = Optimizer::adam(0.1);
        let model = Model::plan(&cfg, Mode::Training { max_batch: 2, optimizer }).unwrap();
        let mut arena = vec![0.0; model.report().total_floats()];
        let mut net = Net::new(model, &mut arena).unwrap();
        net.init_params(0);
        let config = TrainConfig { epochs: 1, schedule: Schedule::Constant, clip_grad_norm: clip };
        let mut trainer = Trainer::new(net, optimizer, config).unwrap();
        trainer.measure_grad_norm(measure);
        let norms: Vec<Option<f32>> = (0..3)
            .map(|_| trainer.train_step(&[0.1, 0.2, 0.3, 0.4], &[1.0, 2.0]).unwrap().grad_norm)
            .collect();
        (norms, trainer.net().params().to_vec())
    };
    let (quiet, w_quiet) = run(None, false);
    let (measured, w_measured) = run(None, true);
    assert_eq!(quiet, [None; 3]);
    assert!(measured.iter().all(|n| n.is_some_and(|v| v.is_finite() && v > 0.0)), "{measured:?}");
    assert_eq!(w_quiet, w_measured, "measuring the norm changed the weights");
    let (clipped, _) = run(Some(1e9), false);
    assert_eq!(clipped, measured, "clipping measures the same norm");
}

/// SPEC §3.4: GQA with G = H is MHA, bit for bit, in outputs and every gradient.
#[test]
fn gqa_with_as_many_groups_as_heads_is_mha_bit_for_bit() {
    use regkern_core::{AttentionType, ModelConfig, TransformerConfig};
    let run = |attention: AttentionType, num_groups: usize| {
        let cfg = ModelConfig::Transformer(TransformerConfig {
            input_dim: 2,
            output_dim: 1,
            embed_dim: 16,
            ffn_dim: 24,
            num_layers: 2,
            num_heads: 4,
            num_groups,
            attention,
            max_seq_len: 9,
            ffn_act: Activation::Gelu,
            autoregressive: false,
            kv_cache: None,
            moe: None,
        });
        let model =
            Model::plan(&cfg, Mode::Training { max_batch: 3, optimizer: Optimizer::adam(1e-3) }).unwrap();
        let mut arena = vec![0.0; model.report().total_floats()];
        let mut net = Net::new(model, &mut arena).unwrap();
        net.init_params(11);
        let x: Vec<f32> = (0..3 * 9 * 2).map(|i| ((i * 37) % 23) as f32 / 11.5 - 1.0).collect();
        let loss = net.loss_and_grads(&x, &[0.3, -0.2, 0.9]).unwrap();
        let mut out = [0.0f32; 3];
        net.predict(&x, &mut out).unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        (loss.to_bits(), bits(&out), bits(net.grads()), bits(net.params()))
    };
    let mha = run(AttentionType::Mha, 1); // num_groups is ignored for MHA
    let gqa = run(AttentionType::Gqa, 4);
    assert_eq!(mha.3, gqa.3, "same seed, same layout: the initial weights must agree");
    assert_eq!(mha.0, gqa.0, "loss");
    assert_eq!(mha.1, gqa.1, "outputs");
    assert_eq!(mha.2, gqa.2, "gradients");
}

/// `Kernels::Portable` runs every product on the portable kernel — the bits a microcontroller
/// computes (the firmware check in `.ci/firmware.sh` compares them with QEMU's); `Auto` may take
/// SIMD kernels, which fuse multiply-adds and so differ in the last bits only. Checked on a
/// regression transformer with MoE and on an encoder-decoder: loss, outputs and gradients.
#[test]
fn portable_kernels_agree_with_the_simd_ones_to_rounding() {
    use regkern_core::ops::gemm::best_kernel;
    use regkern_core::{
        AttentionType, EncoderDecoderConfig, Kernels, ModelConfig, MoeConfig, TransformerConfig,
    };
    let t = TransformerConfig {
        embed_dim: 32,
        ffn_dim: 48,
        num_heads: 4,
        num_groups: 2,
        attention: AttentionType::Gqa,
        max_seq_len: 12,
        moe: Some(MoeConfig { num_experts: 3, ..MoeConfig::default() }),
        ..TransformerConfig::default()
    };
    let configs = [
        ModelConfig::Transformer(t),
        ModelConfig::EncoderDecoder(EncoderDecoderConfig::from_stack(
            &TransformerConfig { moe: None, ..t },
            1,
            1,
        )),
    ];
    for cfg in configs {
        let run = |kernels: Kernels| {
            let model =
                Model::plan(&cfg, Mode::Training { max_batch: 3, optimizer: Optimizer::adam(1e-3) }).unwrap();
            let mut arena = vec![0.0; model.report().total_floats()];
            let mut net = Net::new(model, &mut arena).unwrap();
            net.set_kernels(kernels);
            assert_eq!(net.model().kernels(), kernels);
            net.init_params(5);
            let (xl, yl) = (3 * net.in_len(), 3 * net.out_len());
            let x: Vec<f32> = (0..xl).map(|i| ((i * 37) % 23) as f32 / 11.5 - 1.0).collect();
            let y: Vec<f32> = (0..yl).map(|i| ((i * 11) % 7) as f32 / 7.0 - 0.5).collect();
            let loss = net.loss_and_grads(&x, &y).unwrap();
            (loss, net.output(3).to_vec(), net.grads().to_vec())
        };
        let (portable, auto) = (run(Kernels::Portable), run(Kernels::Auto));
        assert_eq!(run(Kernels::Portable).2, portable.2, "portable kernels are deterministic");
        let rel = |a: &[f32], b: &[f32]| {
            let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
            a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
        };
        assert!(rel(&[portable.0], &[auto.0]) < 1e-5, "loss {} vs {}", portable.0, auto.0);
        assert!(rel(&portable.1, &auto.1) < 1e-5, "outputs: {}", rel(&portable.1, &auto.1));
        assert!(rel(&portable.2, &auto.2) < 1e-5, "gradients: {}", rel(&portable.2, &auto.2));
        if best_kernel() != regkern_core::ops::Kernel::Portable {
            assert_ne!(portable.2, auto.2, "on a SIMD CPU the two paths should not give the same bits");
        }
    }
}

/// A transformer planned for the sequences a run feeds (`Model::plan_for`) computes exactly what
/// one planned for its whole `max_seq_len` computes at that length, in less memory; the same
/// parameter table, so checkpoints move between the two.
#[test]
fn planning_for_the_run_length_changes_memory_not_results() {
    use regkern_core::{ModelConfig, TransformerConfig};
    let cfg = ModelConfig::Transformer(TransformerConfig {
        embed_dim: 16,
        ffn_dim: 32,
        num_heads: 4,
        num_groups: 2,
        max_seq_len: 40,
        ..TransformerConfig::default()
    });
    let mode = Mode::Training { max_batch: 4, optimizer: Optimizer::adam(1e-3) };
    let run = |model: Model| {
        let mut arena = vec![0.0; model.report().total_floats()];
        let mut net = Net::new(model, &mut arena).unwrap();
        net.set_seq_len(10).unwrap();
        net.init_params(3);
        let x: Vec<f32> = (0..4 * 10).map(|i| ((i * 37) % 23) as f32 / 11.5 - 1.0).collect();
        let loss = net.loss_and_grads(&x, &[0.3, -0.2, 0.9, 0.1]).unwrap();
        (loss.to_bits(), net.grads().iter().map(|g| g.to_bits()).collect::<Vec<_>>())
    };
    let (full, short) = (Model::plan(&cfg, mode).unwrap(), Model::plan_for(&cfg, mode, 10).unwrap());
    assert!(short.report().total_floats() < full.report().total_floats());
    assert_eq!(short.params().collect::<Vec<_>>(), full.params().collect::<Vec<_>>(), "parameter tables");
    assert_eq!(run(short), run(full));
    assert!(Model::plan_for(&cfg, mode, 41).is_err(), "longer than max_seq_len");
    assert!(Model::plan_for(&cfg, mode, 0).is_err());
}

/// A lean plan (`Memory::Lean`: attention probabilities, the norms' outputs and the FFN's
/// post-activation recomputed in backward, not kept) takes less memory and gives the same bits:
/// losses and every gradient of dense transformers (GELU, tanh), a MoE one, an autoregressive one
/// and an encoder-decoder (cross-attention too).
#[test]
fn lean_plans_change_memory_not_results() {
    use regkern_core::{
        Activation, Capacity, EncoderDecoderConfig, Memory, ModelConfig, MoeConfig, TransformerConfig,
    };
    let base = TransformerConfig {
        embed_dim: 16,
        ffn_dim: 24,
        num_heads: 4,
        num_groups: 2,
        max_seq_len: 6,
        ..TransformerConfig::default()
    };
    let moe = MoeConfig { num_experts: 3, top_k: 2, capacity: Capacity::Factor(1.0), alpha: 0.01 };
    let configs = [
        ModelConfig::Transformer(base),
        ModelConfig::Transformer(TransformerConfig { ffn_act: Activation::Tanh, num_layers: 2, ..base }),
        ModelConfig::Transformer(TransformerConfig { moe: Some(moe), ..base }),
        ModelConfig::Transformer(TransformerConfig { autoregressive: true, ..base }),
        ModelConfig::EncoderDecoder(EncoderDecoderConfig::from_stack(&base, 1, 2)),
    ];
    let mode = Mode::Training { max_batch: 3, optimizer: Optimizer::adam(1e-3) };
    for cfg in &configs {
        let run = |memory| {
            let model = Model::plan_with(cfg, mode, 6, memory).unwrap();
            let floats = model.report().total_floats();
            let mut arena = vec![0.0; floats];
            let mut net = Net::new(model, &mut arena).unwrap();
            net.init_params(5);
            let x: Vec<f32> = (0..3 * net.in_len()).map(|i| ((i * 37) % 23) as f32 / 11.5 - 1.0).collect();
            let y: Vec<f32> = (0..3 * net.out_len()).map(|i| ((i * 11) % 7) as f32 / 3.5 - 1.0).collect();
            let loss = net.loss_and_grads(&x, &y).unwrap();
            (floats, loss.to_bits(), net.grads().iter().map(|g| g.to_bits()).collect::<Vec<_>>())
        };
        let (fast, lean) = (run(Memory::Fast), run(Memory::Lean));
        assert!(lean.0 < fast.0, "{cfg:?}: lean {} floats, fast {}", lean.0, fast.0);
        assert_eq!((lean.1, &lean.2), (fast.1, &fast.2), "{cfg:?}");
    }
}
