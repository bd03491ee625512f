//! Autoregressive generation (SPEC §3.7): against PyTorch's greedy generation, cached against
//! uncached, KV cache sizes, and every bad request an error.

use regkern_core::layers::KvDtype;
use regkern_core::models::{Context, Generate};
use regkern_core::{Error, Mode, Model, ModelConfig, Net, Region, TransformerConfig};
use regkern_tests::Fixture;

/// The P4 model (WORKLOADS.md): E 64, F 128, 2 layers, H 8, G 4, max_seq_len 128.
fn p4(kv_cache: Option<KvDtype>) -> TransformerConfig {
    TransformerConfig { autoregressive: true, kv_cache, ..TransformerConfig::default() }
}

fn with_net<R>(cfg: TransformerConfig, max_batch: usize, f: impl FnOnce(&mut Net<'_>) -> R) -> R {
    let model = Model::plan(&ModelConfig::Transformer(cfg), Mode::Inference { max_batch }).unwrap();
    let mut arena = vec![0.0; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).unwrap();
    f(&mut net)
}

fn generate(net: &mut Net<'_>, prompt: &[f32], prompt_len: usize, g: Generate) -> Vec<f32> {
    let n = prompt.len() / prompt_len;
    let mut out = vec![0.0; n * g.steps];
    net.generate(prompt, prompt_len, &mut out, g).unwrap();
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// PyTorch's greedy generation (float64) from the same weights and prompts: expanding context
/// to max_seq_len, and a sliding window of 8 for 30 steps, with and without the cache.
#[test]
fn generation_matches_pytorch_expanding_and_sliding() {
    let fx = Fixture::load("transformer_ar_generate");
    let ModelConfig::Transformer(cfg) = fx.model_config() else { panic!("a transformer fixture") };
    let cfg = TransformerConfig { kv_cache: Some(KvDtype::F32), ..cfg };
    let u = |k: &str| fx.config[k].as_u64().unwrap() as usize;
    let (prompt_len, window) = (fx.seq_len(), u("window"));
    with_net(cfg, fx.batch(), |net| {
        fx.load_params(net, "param.");
        for use_cache in [false, true] {
            let g = Generate { steps: u("steps_expanding"), context: Context::Expanding, use_cache };
            let got = generate(net, fx.get("prompt"), prompt_len, g);
            let err = max_abs_diff(&got, fx.get("gen_expanding"));
            assert!(err < 1e-5, "expanding, cache {use_cache}: off by {err:e}");
            let g = Generate { steps: u("steps_sliding"), context: Context::Sliding { window }, use_cache };
            let got = generate(net, fx.get("prompt"), prompt_len, g);
            let err = max_abs_diff(&got, fx.get("gen_sliding"));
            assert!(err < 1e-5, "sliding, cache {use_cache}: off by {err:e}");
        }
    });
}

/// SPEC §3.7 / issue 4: over 112 steps from a 16-step prompt (P4), an f32 cache agrees with
/// recomputation within 1e-5; f16 and bf16 caches within the bounds measured here and stated in
/// the KV cache's docs.
#[test]
fn cached_generation_agrees_with_recomputation() {
    let prompt: Vec<f32> = (0..2 * 16).map(|i| (0.37 * i as f32).sin()).collect();
    let run = |dtype: KvDtype, use_cache: bool| {
        with_net(p4(Some(dtype)), 2, |net| {
            net.init_params(3);
            generate(net, &prompt, 16, Generate { steps: 112, context: Context::Expanding, use_cache })
        })
    };
    let exact = run(KvDtype::F32, false);
    assert!(exact.iter().any(|&v| (v - exact[0]).abs() > 1e-3), "generation is constant: a weak test");
    let scale = exact.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (dtype, bound) in [(KvDtype::F32, 1e-5), (KvDtype::F16, 1e-3), (KvDtype::Bf16, 1e-2)] {
        let err = max_abs_diff(&run(dtype, true), &exact) / scale;
        println!(
            "{} cache: largest difference from recomputation {err:.2e} (relative to the largest value)",
            dtype.name()
        );
        assert!(err <= bound, "{} cache: {err:e} > {bound:e}", dtype.name());
    }
}

#[test]
fn the_kv_cache_is_planned_and_half_types_halve_it() {
    let bytes = |dtype| {
        let m = Model::plan(&ModelConfig::Transformer(p4(Some(dtype))), Mode::Inference { max_batch: 1 })
            .unwrap();
        m.report().bytes(Region::KvCache)
    };
    // 2 (k, v) × 2 layers × 1 sequence × 128 positions × G·D = 32 floats.
    assert_eq!(bytes(KvDtype::F32), 2 * 2 * 128 * 32 * 4);
    assert_eq!(bytes(KvDtype::F16), bytes(KvDtype::F32) / 2);
    assert_eq!(bytes(KvDtype::Bf16), bytes(KvDtype::F32) / 2);
    let none = Model::plan(&ModelConfig::Transformer(p4(None)), Mode::Inference { max_batch: 1 }).unwrap();
    assert_eq!(none.report().bytes(Region::KvCache), 0);
    // A cache on a regression model is a configuration error.
    let bad = TransformerConfig { kv_cache: Some(KvDtype::F32), ..TransformerConfig::default() };
    assert!(Model::plan(&ModelConfig::Transformer(bad), Mode::Inference { max_batch: 1 }).is_err());
}

#[test]
fn bad_generation_requests_are_errors() {
    with_net(p4(Some(KvDtype::F32)), 2, |net| {
        net.init_params(0);
        let g = |steps, context| Generate { steps, context, use_cache: true };
        let mut out = vec![0.0; 64];
        let bad = |r: Result<(), Error>| r.expect_err("must be rejected");
        // Zero steps; a window of 0 or beyond max_seq_len.
        assert!(matches!(
            bad(net.generate(&[0.1; 4], 4, &mut out[..0], g(0, Context::Expanding))),
            Error::BadConfig { field: "steps", .. }
        ));
        assert!(matches!(
            bad(net.generate(&[0.1; 4], 4, &mut out[..4], g(4, Context::Sliding { window: 0 }))),
            Error::BadConfig { field: "window", .. }
        ));
        assert!(matches!(
            bad(net.generate(&[0.1; 4], 4, &mut out[..4], g(4, Context::Sliding { window: 129 }))),
            Error::BadConfig { field: "window", .. }
        ));
        // A prompt longer than the window, or than max_seq_len.
        assert!(matches!(
            bad(net.generate(&[0.1; 9], 9, &mut out[..4], g(4, Context::Sliding { window: 8 }))),
            Error::BadConfig { field: "prompt", .. }
        ));
        let long = vec![0.1; 129];
        assert!(matches!(
            bad(net.generate(&long, 129, &mut out[..4], g(4, Context::Expanding))),
            Error::BadConfig { field: "prompt", .. }
        ));
        // An expanding context past max_seq_len: 16 + 113 − 1 = 128 positions fit, 16 + 114 − 1 do not.
        let mut big = vec![0.0; 114];
        assert_eq!(
            bad(net.generate(&[0.1; 16], 16, &mut big, g(114, Context::Expanding))),
            Error::ContextTooLong { needed: 129, max: 128 }
        );
        assert!(net.generate(&[0.1; 16], 16, &mut big[..113], g(113, Context::Expanding)).is_ok());
        // An output buffer of the wrong size; more sequences than planned.
        assert!(matches!(
            bad(net.generate(&[0.1; 4], 4, &mut out[..3], g(4, Context::Expanding))),
            Error::BadLen { what: "out", .. }
        ));
        assert!(matches!(
            bad(net.generate(&[0.1; 12], 4, &mut out[..12], g(4, Context::Expanding))),
            Error::BatchTooLarge { .. }
        ));
        assert!(matches!(
            bad(net.generate(&[], 4, &mut out[..0], g(4, Context::Expanding))),
            Error::BadConfig { .. }
        ));
    });
    // No cache planned; a regression model.
    with_net(p4(None), 1, |net| {
        let mut out = [0.0; 4];
        let g = Generate { steps: 4, context: Context::Expanding, use_cache: true };
        assert!(matches!(
            net.generate(&[0.1; 4], 4, &mut out, g).unwrap_err(),
            Error::BadConfig { field: "kv_cache", .. }
        ));
    });
    with_net(TransformerConfig::default(), 1, |net| {
        let mut out = [0.0; 4];
        let g = Generate { steps: 4, context: Context::Expanding, use_cache: false };
        assert!(matches!(
            net.generate(&[0.1; 4], 4, &mut out, g).unwrap_err(),
            Error::BadConfig { field: "generate", .. }
        ));
    });
}

/// The P5 encoder-decoder (WORKLOADS.md): E 64, F 128, 2 + 2 layers, H 8, G 4.
fn p5(kv_cache: Option<KvDtype>) -> ModelConfig {
    ModelConfig::EncoderDecoder(regkern_core::EncoderDecoderConfig { kv_cache, ..Default::default() })
}

/// Greedy decoding of an encoder-decoder for `src` values per source, `tgt` steps.
fn greedy(cfg: ModelConfig, x: &[f32], (src, tgt): (usize, usize), seed: u64) -> Vec<f32> {
    let n = x.len() / src;
    let model = Model::plan(&cfg, Mode::Inference { max_batch: n }).unwrap();
    let mut arena = vec![0.0; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).unwrap();
    net.set_seq_len(src).unwrap();
    net.set_target_len(tgt).unwrap();
    net.init_params(seed);
    let mut out = vec![0.0; n * tgt];
    net.predict(x, &mut out).unwrap();
    out
}

/// Issue 6: greedy decoding through the caches (the decoder's self-attention KV cache, the
/// cross-attention keys and values computed once per sequence) equals re-running the whole
/// decoder on the growing prefix within 1e-5, over 32 steps from sources of 32 (P5's shapes);
/// f16 and bf16 self-attention caches within 2e-3 and 2e-2 of the largest value (measured:
/// 1.1e-3 and 6.5e-3; 32 fed-back steps compound the storage rounding of 4.9e-4 and 3.9e-3).
#[test]
fn cached_greedy_decoding_agrees_with_recomputation() {
    let x: Vec<f32> = (0..3 * 32).map(|i| (0.61 * i as f32).sin()).collect();
    let exact = greedy(p5(None), &x, (32, 32), 4);
    assert!(exact.iter().any(|&v| (v - exact[0]).abs() > 1e-2), "decoding is constant: a weak test");
    let scale = exact.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (dtype, bound) in [(KvDtype::F32, 1e-5), (KvDtype::F16, 2e-3), (KvDtype::Bf16, 2e-2)] {
        let err = max_abs_diff(&greedy(p5(Some(dtype)), &x, (32, 32), 4), &exact) / scale;
        println!("encoder-decoder, {} cache: largest difference from recomputation {err:.2e}", dtype.name());
        assert!(err <= bound, "{} cache: {err:e} > {bound:e}", dtype.name());
    }
    // Sequences are decoded independently: the second alone decodes as it did in the batch.
    let alone = greedy(p5(Some(KvDtype::F32)), &x[32..64], (32, 32), 4);
    assert!(max_abs_diff(&alone, &exact[32..64]) / scale <= 1e-5);
}

/// Greedy decoding without a cache feeds back each pass's own prediction, as the cached path
/// and PyTorch's loop do: decoding k steps gives the first k values of decoding more, bit for bit,
/// even where a MoE's capacity binds (a pass over more tokens drops others, so the earlier
/// positions' outputs recomputed by a later pass differ from the predictions that were fed back).
#[test]
fn uncached_greedy_decoding_returns_each_passs_own_prediction() {
    let moe = regkern_core::MoeConfig {
        num_experts: 4,
        top_k: 2,
        capacity: regkern_core::Capacity::Absolute(3),
        alpha: 0.01,
    };
    let cfg = ModelConfig::EncoderDecoder(regkern_core::EncoderDecoderConfig {
        kv_cache: None,
        moe: Some(moe),
        ..Default::default()
    });
    let x: Vec<f32> = (0..3 * 16).map(|i| (0.37 * i as f32).cos()).collect();
    let full = greedy(cfg.clone(), &x, (16, 12), 7);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for k in [1, 2, 5, 11] {
        let part = greedy(cfg.clone(), &x, (16, k), 7);
        for b in 0..3 {
            assert_eq!(bits(&part[b * k..][..k]), bits(&full[b * 12..][..k]), "{k} steps, sequence {b}");
        }
    }
    // The capacity binds: the last pass, over 12 positions of 3 sequences, drops assignments.
    let model = Model::plan(&cfg, Mode::Inference { max_batch: 3 }).unwrap();
    let mut arena = vec![0.0; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).unwrap();
    net.set_seq_len(16).unwrap();
    net.set_target_len(12).unwrap();
    net.init_params(7);
    let mut out = vec![0.0; 3 * 12];
    net.predict(&x, &mut out).unwrap();
    assert_eq!(bits(&out), bits(&full));
    let stats = net.moe_stats().expect("a MoE model has statistics");
    assert!(stats.dropped > 0, "the capacity does not bind: a weak test ({stats:?})");
}

/// Encoder-decoder requests that cannot be served are errors, not panics.
#[test]
fn encoder_decoder_bad_requests_are_errors() {
    let model = Model::plan(&p5(Some(KvDtype::F32)), Mode::Inference { max_batch: 2 }).unwrap();
    let mut arena = vec![0.0; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).unwrap();
    assert!(matches!(net.set_target_len(0), Err(Error::BadConfig { field: "target_len", .. })));
    assert!(matches!(net.set_target_len(129), Err(Error::BadConfig { field: "target_len", .. })));
    net.set_seq_len(5).unwrap();
    net.set_target_len(3).unwrap();
    let mut out = vec![0.0; 2 * 3];
    assert!(matches!(net.predict(&[0.0; 9], &mut out), Err(Error::BadLen { what: "x", .. })));
    assert!(matches!(net.predict(&[0.0; 10], &mut out[..5]), Err(Error::BadLen { what: "out", .. })));
    assert!(matches!(net.eval_loss(&[0.0; 10], &[0.0; 6]), Err(Error::NotTrainable)));
    let mut generated = vec![0.0; 4];
    let g = Generate { steps: 4, context: Context::Expanding, use_cache: true };
    assert!(matches!(net.generate(&[0.0; 1], 1, &mut generated, g), Err(Error::BadConfig { .. })));
    // A sequence model has no separate target length.
    with_net(p4(None), 1, |net| {
        assert!(matches!(net.set_target_len(4), Err(Error::BadConfig { field: "target_len", .. })));
    });
}
