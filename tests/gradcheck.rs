//! Finite-difference gradient checks of whole models w.r.t. every parameter.
//!
//! Central differences (`regkern_core::testing::grad_check_eps`) of the MSE loss, evaluated in
//! f32 and differenced in f64; verdict: relative error of the whole gradient vector < 1e-3.
//! ReLU models use a smaller step and a seed whose hidden pre-activations all stay ten steps
//! away from the kink at 0 (found by an independent plain-loop forward pass), per ggml's advice.

use regkern_core::testing::{grad_check_eps, lcg_fill};
use regkern_core::{
    Activation, AttentionType, LinearConfig, Mode, Model, ModelConfig, Net, Optimizer, TransformerConfig,
};
use regkern_tests::mlp;

/// Smallest |pre-activation| of the hidden layers over the batch, by a plain-loop forward pass
/// over the parameter table (an oracle independent of the gemm kernels).
fn min_hidden_preact(net: &Net<'_>, x: &[f32], act: Activation) -> f32 {
    let table: Vec<_> = net.model().params().collect();
    let n_layers = table.len() / 2;
    let mut min = f32::INFINITY;
    for sample in x.chunks_exact(net.model().in_len()) {
        let mut h = sample.to_vec();
        for l in 0..n_layers - 1 {
            let (w, b) =
                (&net.params()[table[2 * l].slot.range()], &net.params()[table[2 * l + 1].slot.range()]);
            let n_in = h.len();
            h = b
                .iter()
                .enumerate()
                .map(|(o, &bo)| bo + w[o * n_in..][..n_in].iter().zip(&h).map(|(a, c)| a * c).sum::<f32>())
                .collect();
            min = h.iter().fold(min, |m, v| m.min(v.abs()));
            h.iter_mut().for_each(|v| *v = act.apply(*v));
        }
    }
    min
}

/// Check d loss / d params of `cfg` on a random batch of `n` samples.
fn check_model(cfg: &ModelConfig, n: usize, eps: f32, seed: u32) -> f64 {
    let model = Model::plan(cfg, Mode::Training { max_batch: n, optimizer: Optimizer::sgd(0.1) }).unwrap();
    let (in_len, out_len) = (model.in_len(), model.out_len());
    let mut arena = vec![0.0; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).unwrap();
    net.init_params(u64::from(seed));
    let (mut x, mut y) = (vec![0.0; n * in_len], vec![0.0; n * out_len]);
    let mut s = seed;
    lcg_fill(&mut x, &mut s);
    lcg_fill(&mut y, &mut s);
    if let ModelConfig::Mlp(m) = cfg
        && m.act == Activation::Relu
    {
        // Perturbing one weight by eps moves a pre-activation by far less than 10·eps here.
        let margin = min_hidden_preact(&net, &x, m.act);
        if margin < 10.0 * eps {
            return f64::NAN; // too close to a kink for this seed; the caller tries another
        }
    }
    net.loss_and_grads(&x, &y).unwrap();
    let analytic = net.grads().to_vec();
    let mut params = net.params().to_vec();
    grad_check_eps(&mut params, &analytic, eps, |p| {
        net.params_mut().copy_from_slice(p);
        f64::from(net.eval_loss(&x, &y).unwrap())
    })
}

#[test]
fn linear_regression_gradients_match_finite_differences() {
    for (n_in, n_out, n) in [(8, 1, 5), (3, 4, 2), (1, 1, 1)] {
        let err = check_model(&ModelConfig::Linear(LinearConfig { n_in, n_out }), n, 1e-2, 3);
        assert!(err < 1e-3, "linear {n_in}->{n_out}: relative error {err:e}");
    }
}

#[test]
fn mlp_gradients_match_finite_differences_for_every_activation() {
    for act in [Activation::Tanh, Activation::Gelu, Activation::Relu] {
        for (dims, n) in [(&[7usize, 6][..], 4), (&[5][..], 3), (&[4, 4, 3, 5][..], 2)] {
            // ReLU: a smaller step, and the first seed whose pre-activations all keep 10 steps
            // away from the kink at 0.
            let eps = if act == Activation::Relu { 1e-3 } else { 1e-2 };
            let err =
                (11..61).map(|seed| check_model(&mlp(5, dims, 2, act), n, eps, seed)).find(|e| !e.is_nan());
            let err =
                err.unwrap_or_else(|| panic!("{act:?} {dims:?}: every seed puts a pre-activation near 0"));
            assert!(err < 1e-3, "{act:?} {dims:?}: relative error {err:e}");
        }
    }
}

/// A tiny transformer of the given attention layout (two blocks, or one to check a lone block).
fn tiny_transformer(attention: AttentionType, heads: usize, groups: usize) -> TransformerConfig {
    TransformerConfig {
        input_dim: 2,
        output_dim: 2,
        embed_dim: 8,
        ffn_dim: 12,
        num_layers: 2,
        num_heads: heads,
        num_groups: groups,
        attention,
        max_seq_len: 6,
        ffn_act: Activation::Gelu,
        autoregressive: false,
        kv_cache: None,
        moe: None,
    }
}

/// A Mixture-of-Experts transformer against finite differences: 4 experts, top-2, capacity 1.25
/// per call; and a single expert (whose layout once had no stride) in one and two blocks. The
/// router is scaled up so that routing decisions sit far from ties: a step of the difference
/// quotient must not change which experts a token picks.
#[test]
fn moe_transformer_gradients_match_finite_differences() {
    use regkern_core::{Capacity, MoeConfig};
    let four = MoeConfig { num_experts: 4, top_k: 2, capacity: Capacity::Factor(1.25), alpha: 0.05 };
    let one = MoeConfig { num_experts: 1, top_k: 1, capacity: Capacity::Factor(1.25), alpha: 0.05 };
    for (moe, num_layers) in [(four, 1), (one, 1), (one, 2)] {
        moe_gradients_match(TransformerConfig {
            moe: Some(moe),
            num_layers,
            ..tiny_transformer(AttentionType::Gqa, 4, 2)
        });
    }
}

fn moe_gradients_match(cfg: TransformerConfig) {
    let (batch, seq) = (2, 5);
    let model = Model::plan(
        &ModelConfig::Transformer(cfg),
        Mode::Training { max_batch: batch, optimizer: Optimizer::sgd(0.1) },
    )
    .unwrap();
    let mut arena = vec![0.0; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).unwrap();
    net.set_seq_len(seq).unwrap();
    net.init_params(9);
    let table: Vec<_> = net.model().params().collect();
    for p in table.iter().filter(|p| p.name.as_str().ends_with("router.weight")) {
        net.params_mut()[p.slot.range()].iter_mut().for_each(|v| *v *= 8.0);
    }
    let (mut x, mut y) = (vec![0.0; batch * seq * 2], vec![0.0; batch * 2]);
    let mut s = 5;
    lcg_fill(&mut x, &mut s);
    lcg_fill(&mut y, &mut s);
    let loss0 = net.loss_and_grads(&x, &y).unwrap();
    let aux = net.moe_stats().unwrap().aux;
    assert!(aux > 0.0 && loss0 > aux, "the loss includes the load-balancing term");
    let analytic = net.grads().to_vec();
    for p in &table {
        if p.name.as_str().ends_with("k_proj.bias") {
            continue; // zero in exact arithmetic; checked in the dense test
        }
        let original = net.params().to_vec();
        let mut sub = original[p.slot.range()].to_vec();
        // The difference quotients pass through softmaxes in f32 and are rounding-noise bound,
        // their relative error falling as 1/step: the router's 6.4e-3, 2.1e-3, 7.8e-4, 2.7e-4 at
        // steps 3e-4, 1e-3, 3e-3, 1e-2 (3e-3 is quiet and far from any routing decision); the
        // others' up to 1.7e-2 at 1e-3 and 1.4e-3 at 1e-2, the step taken.
        let eps = if p.name.as_str().ends_with("router.weight") { 3e-3 } else { 1e-2 };
        let err = grad_check_eps(&mut sub, &analytic[p.slot.range()], eps, |v| {
            net.params_mut()[p.slot.range()].copy_from_slice(v);
            net.loss_and_grads(&x, &y).map(f64::from).unwrap()
        });
        net.params_mut().copy_from_slice(&original);
        assert!(err < 2e-3, "{} blocks, {}: relative error {err:e}", cfg.num_layers, p.name.as_str());
    }
}

#[test]
fn transformer_gradients_match_finite_differences_for_every_parameter_and_the_input() {
    // Two blocks of each layout, one block alone between the input projection and the head, and
    // autoregressive models (causal attention, the head at every position).
    let layouts = [
        (AttentionType::Mha, 4, 4, 2, false),
        (AttentionType::Mqa, 4, 1, 2, false),
        (AttentionType::Gqa, 4, 2, 2, false),
        (AttentionType::Gqa, 4, 2, 1, false),
        (AttentionType::Gqa, 4, 2, 2, true),
        (AttentionType::Mha, 2, 2, 1, true),
    ];
    for (attention, h, g, num_layers, autoregressive) in layouts {
        let cfg = ModelConfig::Transformer(TransformerConfig {
            num_layers,
            autoregressive,
            ..tiny_transformer(attention, h, g)
        });
        let (batch, seq) = (2, 5);
        let out_len = if autoregressive { seq * 2 } else { 2 };
        let model =
            Model::plan(&cfg, Mode::Training { max_batch: batch, optimizer: Optimizer::sgd(0.1) }).unwrap();
        let mut arena = vec![0.0; model.report().total_floats()];
        let mut net = Net::new(model, &mut arena).unwrap();
        net.set_seq_len(seq).unwrap();
        net.init_params(5);
        // Perturb the norms away from (1, 0) so their gradients are not degenerate.
        let table: Vec<_> = net.model().params().collect();
        let mut s = 77;
        for p in &table {
            if matches!(p.init, regkern_core::Init::Const(_)) {
                let mut noise = vec![0.0; p.slot.len];
                lcg_fill(&mut noise, &mut s);
                net.params_mut()[p.slot.range()].iter_mut().zip(&noise).for_each(|(v, n)| *v += 0.1 * n);
            }
        }
        let (mut x, mut y) = (vec![0.0; batch * seq * 2], vec![0.0; batch * out_len]);
        lcg_fill(&mut x, &mut s);
        lcg_fill(&mut y, &mut s);
        net.loss_and_grads(&x, &y).unwrap();
        let analytic = net.grads().to_vec();
        let dx = net.input_grad(batch).unwrap().to_vec();
        // Per tensor, so a failure names the parameter.
        for p in &table {
            if p.name.as_str().ends_with("k_proj.bias") {
                // Exactly zero: a key bias shifts every score of a row by the same q·b, and
                // softmax is shift-invariant. Finite differences would only compare noise.
                let worst = analytic[p.slot.range()].iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!(worst < 1e-6, "{attention:?} {}: gradient {worst:e}, expected 0", p.name.as_str());
                continue;
            }
            let original = net.params().to_vec();
            let mut sub = original[p.slot.range()].to_vec();
            let err = grad_check_eps(&mut sub, &analytic[p.slot.range()], 1e-2, |v| {
                net.params_mut()[p.slot.range()].copy_from_slice(v);
                f64::from(net.eval_loss(&x, &y).unwrap())
            });
            net.params_mut().copy_from_slice(&original);
            assert!(err < 1e-3, "{attention:?} {}: relative error {err:e}", p.name.as_str());
        }
        let mut x0 = x.clone();
        let err = grad_check_eps(&mut x0, &dx, 1e-2, |x| f64::from(net.eval_loss(x, &y).unwrap()));
        assert!(err < 1e-3, "{attention:?} input: relative error {err:e}");
    }
}

/// SPEC §3.6 encoder-decoder: every parameter of both stacks (cross-attention included, whose
/// gradient reaches the encoder only through the memory) and the source, with source and target
/// of different lengths and widths.
///
/// Tolerance 4e-3 rather than 1e-3: the loss passes through up to three blocks of each stack in
/// f32, and its rounding noise, divided by the step, is what the difference quotient measures
/// for the smallest gradients. Measured on these models with the natural initialisation, the
/// worst error falls as the step grows — 2.9e-2, 1.2e-2, 3.0e-3 at steps 1e-3, 3e-3, 1e-2 — the
/// signature of noise, until curvature takes over (2.5e-3 at 3e-2). The query and key weights are
/// doubled so that attention is not near-uniform, which makes their gradients larger and the
/// check sharper: worst 1.6e-3 at step 5e-3. The analytic gradients themselves match PyTorch's
/// float64 ones to 2e-6 (`pytorch_parity`).
#[test]
fn encoder_decoder_gradients_match_finite_differences_for_every_parameter_and_the_source() {
    use regkern_core::EncoderDecoderConfig;
    for (attention, h, g, enc_layers, dec_layers) in
        [(AttentionType::Gqa, 4, 2, 2, 1), (AttentionType::Mha, 2, 2, 1, 2), (AttentionType::Mqa, 4, 1, 1, 1)]
    {
        let cfg = ModelConfig::EncoderDecoder(EncoderDecoderConfig {
            input_dim: 2,
            output_dim: 3,
            embed_dim: 8,
            ffn_dim: 12,
            num_encoder_layers: enc_layers,
            num_decoder_layers: dec_layers,
            num_heads: h,
            num_groups: g,
            attention,
            max_seq_len: 6,
            ..Default::default()
        });
        let (batch, src, tgt) = (2, 5, 4);
        let model =
            Model::plan(&cfg, Mode::Training { max_batch: batch, optimizer: Optimizer::sgd(0.1) }).unwrap();
        let mut arena = vec![0.0; model.report().total_floats()];
        let mut net = Net::new(model, &mut arena).unwrap();
        net.set_seq_len(src).unwrap();
        net.set_target_len(tgt).unwrap();
        net.init_params(21);
        let table: Vec<_> = net.model().params().collect();
        let mut s = 78;
        for p in &table {
            if matches!(p.init, regkern_core::Init::Const(_)) {
                let mut noise = vec![0.0; p.slot.len];
                lcg_fill(&mut noise, &mut s);
                net.params_mut()[p.slot.range()].iter_mut().zip(&noise).for_each(|(v, n)| *v += 0.1 * n);
            }
            if ["q_proj.weight", "k_proj.weight"].iter().any(|s| p.name.as_str().ends_with(s)) {
                net.params_mut()[p.slot.range()].iter_mut().for_each(|v| *v *= 2.0);
            }
        }
        let (mut x, mut y) = (vec![0.0; batch * src * 2], vec![0.0; batch * tgt * 3]);
        lcg_fill(&mut x, &mut s);
        lcg_fill(&mut y, &mut s);
        net.loss_and_grads(&x, &y).unwrap();
        let analytic = net.grads().to_vec();
        let dx = net.input_grad(batch).unwrap().to_vec();
        assert!(dx.iter().any(|v| v.abs() > 1e-4), "the source gets a gradient");
        let mut cross = 0;
        for p in &table {
            let name = p.name.as_str();
            if name.ends_with("k_proj.bias") {
                // Zero in exact arithmetic, for self- and cross-attention alike (softmax shift).
                let worst = analytic[p.slot.range()].iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!(worst < 1e-6, "{attention:?} {name}: gradient {worst:e}, expected 0");
                continue;
            }
            cross += usize::from(name.contains("cross_attn"));
            let original = net.params().to_vec();
            let mut sub = original[p.slot.range()].to_vec();
            let err = grad_check_eps(&mut sub, &analytic[p.slot.range()], 5e-3, |v| {
                net.params_mut()[p.slot.range()].copy_from_slice(v);
                f64::from(net.eval_loss(&x, &y).unwrap())
            });
            net.params_mut().copy_from_slice(&original);
            assert!(err < 4e-3, "{attention:?} {name}: relative error {err:e}");
        }
        assert_eq!(cross, 7 * dec_layers, "q, k, v, o weights and q, v, o biases of each cross-attention");
        let mut x0 = x.clone();
        let err = grad_check_eps(&mut x0, &dx, 1e-2, |x| f64::from(net.eval_loss(x, &y).unwrap()));
        assert!(err < 4e-3, "{attention:?} source: relative error {err:e}");
    }
}
