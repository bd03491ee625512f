//! Round trips of every model type, the reference layout, and a catalogue of malformed files.

use super::*;
use crate::Trainer;
use crate::layers::moe::Capacity;
use crate::layers::{Activation, KvDtype};
use crate::models::transformer::MoeConfig;
use crate::models::{
    AttentionType, EncoderDecoderConfig, LinearConfig, MlpConfig, Mode, ModelConfig, Net, TransformerConfig,
};

fn mlp() -> ModelConfig {
    ModelConfig::Mlp(MlpConfig {
        n_in: 3,
        latent_dims: heapless::Vec::from_slice(&[4, 2]).unwrap(),
        n_out: 2,
        act: Activation::Tanh,
    })
}

fn saved(cfg: &ModelConfig, seed: u64) -> (Model, Vec<f32>, Vec<u8>) {
    let model = Model::plan(cfg, Mode::Inference { max_batch: 1 }).unwrap();
    let mut arena = vec![0.0; model.report().total_floats()];
    let mut net = Net::new(model.clone(), &mut arena).unwrap();
    net.init_params(seed);
    let mut out = vec![0u8; net.checkpoint_len().unwrap()];
    let n = net.save_checkpoint(&mut out).unwrap();
    assert_eq!(n, out.len(), "saved_len is exact for parameters");
    let params = packed(&model, net.params());
    (model, params, out)
}

/// A file from a header (JSON text) and data bytes.
fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut f = (header.len() as u64).to_le_bytes().to_vec();
    f.extend_from_slice(header.as_bytes());
    f.extend_from_slice(data);
    f
}

/// The parameters in table order, without the padding between tensors.
fn packed(model: &Model, params: &[f32]) -> Vec<f32> {
    model.params().flat_map(|p| params[p.slot.range()].to_vec()).collect()
}

/// Load into a params region filled with 7.0; returns the tensors' values.
fn load_into(model: &Model, bytes: &[u8]) -> (Result<()>, Vec<f32>) {
    let mut params = vec![7.0; model.report().floats(Region::Params)];
    let r = load(bytes, model, &mut params, None).map(|_| ());
    (r, packed(model, &params))
}

fn reason(r: Result<()>) -> &'static str {
    match r {
        Err(Error::BadCheckpoint { reason, .. }) => reason,
        other => panic!("expected BadCheckpoint, got {other:?}"),
    }
}

#[test]
fn every_model_type_round_trips_with_its_config() {
    let t = TransformerConfig {
        embed_dim: 8,
        ffn_dim: 6,
        num_heads: 2,
        num_groups: 1,
        max_seq_len: 5,
        ..Default::default()
    };
    let moe = MoeConfig { num_experts: 3, top_k: 2, capacity: Capacity::Absolute(4), alpha: 0.05 };
    let configs = [
        ModelConfig::Linear(LinearConfig { n_in: 8, n_out: 1 }),
        mlp(),
        ModelConfig::Transformer(t),
        ModelConfig::Transformer(TransformerConfig {
            autoregressive: true,
            kv_cache: Some(KvDtype::Bf16),
            attention: AttentionType::Mha,
            ..t
        }),
        ModelConfig::Transformer(TransformerConfig {
            moe: Some(MoeConfig { capacity: Capacity::Factor(1.25), ..moe }),
            ..t
        }),
        ModelConfig::EncoderDecoder(EncoderDecoderConfig {
            embed_dim: 8,
            ffn_dim: 6,
            num_heads: 2,
            num_groups: 2,
            num_encoder_layers: 1,
            num_decoder_layers: 2,
            max_seq_len: 4,
            input_dim: 2,
            output_dim: 3,
            moe: Some(moe),
            kv_cache: Some(KvDtype::F16),
            ..Default::default()
        }),
    ];
    for cfg in configs {
        let (model, params, bytes) = saved(&cfg, 3);
        let (r, loaded) = load_into(&model, &bytes);
        r.unwrap();
        assert_eq!(loaded, params, "{cfg:?}");
        let h = Header::parse(&bytes).unwrap();
        assert_eq!(h.config().unwrap(), cfg);
        assert!(h.metadata("format").unwrap().eq_str("pt"));
        assert_eq!(bytes[8..8 + h.json.len()].len() % 8, 0, "data aligned to 8 bytes");
        assert!(h.progress().is_none());
    }
}

#[test]
fn header_is_the_safetensors_layout() {
    let cfg = ModelConfig::Linear(LinearConfig { n_in: 2, n_out: 1 });
    let (_, params, bytes) = saved(&cfg, 1);
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let json = core::str::from_utf8(&bytes[8..8 + n]).unwrap().trim_end();
    // The checksum: CRC-32C of the regkern.* pairs as `key=value\n`, then the data.
    let version = env!("CARGO_PKG_VERSION");
    let mut crc = crc::Crc32c::default();
    crc.update(
        format!("regkern.version={version}\nregkern.type=linear\nregkern.n_in=2\nregkern.n_out=1\n")
            .as_bytes(),
    );
    crc.update(&bytes[8 + n..]);
    assert_eq!(
        json,
        format!(
            concat!(
                "{{\"__metadata__\":{{\"format\":\"pt\",\"regkern.version\":\"{}",
                "\",\"regkern.type\":\"linear\",\"regkern.n_in\":\"2\",\"regkern.n_out\":\"1\",",
                "\"regkern.crc32c\":\"{:08x}\"}},",
                "\"linear.weight\":{{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]}},",
                "\"linear.bias\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}}}"
            ),
            version,
            crc.finish()
        )
    );
    let data: Vec<f32> =
        bytes[8 + n..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(data, params);
}

#[test]
fn tensors_in_any_order_load_when_they_tile_the_data() {
    // As Python's safetensors writes them: sorted by name, not in state_dict order.
    let cfg = ModelConfig::Linear(LinearConfig { n_in: 2, n_out: 1 });
    let model = Model::plan(&cfg, Mode::Inference { max_batch: 1 }).unwrap();
    let data: Vec<u8> = [0.5f32, 1.0, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let h = r#"{"linear.bias":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"linear.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[4,12]},"__metadata__":{"format":"pt"}}"#;
    let (r, params) = load_into(&model, &file(h, &data));
    r.unwrap();
    assert_eq!(params, [1.0, 2.0, 0.5]);
    // Without regkern metadata there is no config to read.
    assert!(matches!(Header::parse(&file(h, &data)).unwrap().config(), Err(Error::BadCheckpoint { .. })));
}

#[test]
fn bad_files_are_errors_and_load_nothing() {
    let cfg = ModelConfig::Linear(LinearConfig { n_in: 2, n_out: 1 });
    let model = Model::plan(&cfg, Mode::Inference { max_batch: 1 }).unwrap();
    let data: Vec<u8> = [0.5f32, 1.0, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let entry = |name: &str, dtype: &str, shape: &str, a: usize, b: usize| {
        format!(r#""{name}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{a},{b}]}}"#)
    };
    let w = |a, b| entry("linear.weight", "F32", "[1,2]", a, b);
    let bias = |a, b| entry("linear.bias", "F32", "[1]", a, b);
    let padded = [&data[..], &[0, 0, 0, 0]].concat();
    let cases: Vec<(String, &[u8], &str)> = vec![
        (format!("{{{},{}}}", w(0, 8), bias(4, 12)), &data, "data_offsets do not match the shape"),
        (format!("{{{},{}}}", w(0, 8), bias(8, 16)), &data, "data_offsets out of bounds"),
        (format!("{{{},{}}}", w(4, 12), bias(0, 4)), &data, ""), // valid: reordered
        (format!("{{{},{}}}", w(0, 8), bias(0, 4)), &data, "data_offsets overlap"),
        (
            format!(
                "{{{},{}}}",
                entry("linear.weight", "F32", "[1,2]", 0, 8),
                entry("linear.bias", "F32", "[1]", 4, 8)
            ),
            &data,
            "data_offsets overlap or leave a gap",
        ),
        (format!("{{{},{}}}", w(0, 8), bias(8, 12)), &data[..11], "data_offsets out of bounds"),
        (
            format!("{{{},{},\"x\":{{}}}}", w(0, 8), bias(8, 12)),
            &data,
            "tensor entry lacks dtype, shape or data_offsets",
        ),
        (
            format!("{{{},{}}}", entry("linear.weight", "F16", "[1,2]", 0, 8), bias(8, 12)),
            &data,
            "dtype must be F32",
        ),
        (
            format!("{{{},{}}}", entry("linear.weight", "F32", "[2,1]", 0, 8), bias(8, 12)),
            &data,
            "shape differs from the model's",
        ),
        (
            format!("{{{},{}}}", entry("linear.weights", "F32", "[1,2]", 0, 8), bias(8, 12)),
            &data,
            "tensor name not in the model",
        ),
        (format!("{{{}}}", w(0, 8)), &data[..8], "tensors missing: every parameter must be present"),
        (format!("{{{},{},{}}}", w(0, 8), bias(8, 12), bias(8, 12)), &data, "tensor name appears twice"),
        (format!("{{{},{}}}", w(0, 8), bias(8, 12)), &padded, "tensors do not tile the data exactly"),
        (format!("{{{},{}", w(0, 8), bias(8, 12)), &data, "malformed header JSON"),
        (format!("{{{},{}}} x", w(0, 8), bias(8, 12)), &data, "bytes after the header's JSON object"),
        (format!("[{},{}]", w(0, 8), bias(8, 12)), &data, "header is not a JSON object"),
        (
            format!("{{{},{}}}", entry("linear.weight", "F32", "[1,-2]", 0, 8), bias(8, 12)),
            &data,
            "expected a non-negative integer",
        ),
        (
            format!("{{{},{}}}", entry("linear.weight", "F32", "[1,2]", 0, 8), bias(8, 12))
                .replace("[0,8]", "[0,99999999999999999999]"),
            &data,
            "number too large",
        ),
        (
            format!("{{\"__metadata__\":{{\"a\":1}},{},{}}}", w(0, 8), bias(8, 12)),
            &data,
            "malformed header JSON",
        ),
        (
            format!("{{{},{}}}", w(0, 8), bias(8, 12)).replace("linear.bias", "linear.b\\q"),
            &data,
            "bad escape in header",
        ),
    ];
    for (header, data, want) in cases {
        let bytes = file(&header, data);
        let (r, params) = load_into(&model, &bytes);
        if want.is_empty() {
            r.unwrap();
            continue;
        }
        assert_eq!(reason(r), want, "{header}");
        assert_eq!(params, [7.0; 3], "{header}: nothing is written on error");
    }
    // Framing: shorter than 8 bytes, a header length past the end or above the cap.
    let good = file(&format!("{{{},{}}}", w(0, 8), bias(8, 12)), &data);
    assert_eq!(reason(load_into(&model, &good[..5]).0), "file shorter than its 8-byte header length");
    let mut long = good.clone();
    long[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
    assert_eq!(reason(load_into(&model, &long).0), "header length beyond the end of the file");
    long[..8].copy_from_slice(&(MAX_HEADER as u64 + 1).to_le_bytes());
    assert_eq!(reason(load_into(&model, &long).0), "header larger than 100 MB");
    long[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(reason(load_into(&model, &long).0), "header larger than 100 MB");
}

#[test]
fn every_truncation_and_every_flipped_byte_is_handled_without_panic() {
    let (model, params, bytes) = saved(&mlp(), 5);
    for len in 0..bytes.len() {
        let (r, loaded) = load_into(&model, &bytes[..len]);
        assert!(r.is_err(), "a file cut at {len} of {} bytes loads", bytes.len());
        assert!(loaded.iter().all(|&v| v == 7.0));
    }
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for i in 0..header {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            let (r, loaded) = load_into(&model, &b);
            // Some flips are harmless (a metadata character, a space); the rest are errors.
            if r.is_ok() {
                assert_eq!(loaded, params, "byte {i} ^ {flip:#x}");
            } else {
                assert!(loaded.iter().all(|&v| v == 7.0));
            }
        }
    }
}

/// The header's JSON rewritten by `edit` (the length prefix follows; the data is kept).
fn rewritten(bytes: &[u8], edit: impl Fn(&str) -> String) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let json = edit(core::str::from_utf8(&bytes[8..8 + n]).unwrap());
    file(&json, &bytes[8 + n..])
}

/// `bytes` with metadata `regkern.{key}` set to `value` and no checksum (as a tool that rewrote
/// it would leave the file).
fn with_metadata(bytes: &[u8], key: &str, value: &str) -> Vec<u8> {
    rewritten(bytes, |j| {
        let j = without_crc(j);
        let at = j.find(&format!("\"regkern.{key}\":\"")).unwrap() + key.len() + 12;
        let end = at + j[at..].find('"').unwrap();
        format!("{}{value}{}", &j[..at], &j[end..])
    })
}

/// The header without its checksum, as a tool that rewrites metadata might leave it.
fn without_crc(json: &str) -> String {
    let at = json.find(",\"regkern.crc32c\"").unwrap();
    format!("{}{}", &json[..at], &json[at + 28..])
}

#[test]
fn the_checksum_refuses_changed_metadata_and_data() {
    let (model, params, bytes) = saved(&mlp(), 5);
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // Any flipped bit of the data is refused (safetensors alone would load it).
    for i in header..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x10;
        let (r, loaded) = load_into(&model, &b);
        assert!(reason(r).starts_with("checksum"), "data byte {i}");
        assert!(loaded.iter().all(|&v| v == 7.0));
    }
    // Metadata the tensors cannot contradict: the activation.
    let relu = rewritten(&bytes, |j| j.replace("\"regkern.act\":\"tanh\"", "\"regkern.act\":\"relu\""));
    assert!(
        matches!(Header::parse(&relu), Err(Error::BadCheckpoint { reason, .. }) if reason.starts_with("checksum"))
    );
    // Without the checksum (a file PyTorch or another tool rewrote) it loads, and says relu.
    let plain = rewritten(&relu, without_crc);
    assert!(Header::parse(&plain).unwrap().metadata("regkern.act").unwrap().eq_str("relu"));
    let (r, loaded) = load_into(&model, &plain);
    r.unwrap();
    assert_eq!(loaded, params);
    // A malformed checksum is an error too.
    let bad_hex = rewritten(&bytes, |j| {
        let at = j.find("\"regkern.crc32c\":\"").unwrap() + 18;
        format!("{}zz{}", &j[..at], &j[at + 2..])
    });
    assert_eq!(reason(Header::parse(&bad_hex).map(|_| ())), "regkern.crc32c is not 8 hex digits");
}

#[test]
fn non_finite_tensors_are_refused_by_name() {
    let (model, _, bytes) = saved(&mlp(), 5);
    let plain = rewritten(&bytes, without_crc);
    let header = 8 + u64::from_le_bytes(plain[..8].try_into().unwrap()) as usize;
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut b = plain.clone();
        // The second tensor (layers.0.bias) starts after the 4×3 weight.
        b[header + 48..header + 52].copy_from_slice(&bad.to_le_bytes());
        let (r, loaded) = load_into(&model, &b);
        let Err(Error::BadCheckpoint { reason, offset }) = r else { panic!("{bad} loaded") };
        assert_eq!(reason, "tensor holds NaN or infinite values");
        let name = Header::parse(&b).unwrap().tensor_at(offset).unwrap();
        assert!(name.eq_str("layers.0.bias"), "{offset}");
        assert!(loaded.iter().all(|&v| v == 7.0));
    }
}

#[test]
fn metadata_that_lies_about_sizes_fails_before_anything_is_allocated() {
    let (_, _, bytes) = saved(&mlp(), 5);
    let cases = [
        ("n_in", "100000000000", "shape differs from the model's"),
        ("latent_dims", "4,2000000000", "shape differs from the model's"),
        ("latent_dims", "4,2,2,2,2,2,2,2,2,2,2,2,2,2,2", "tensors missing: every parameter must be present"),
    ];
    for (key, value, want) in cases {
        let lie = with_metadata(&bytes, key, value);
        let cfg = Header::parse(&lie).unwrap().config().unwrap();
        // Planning is pure; verify holds the plan against the file before any arena exists.
        let model = Model::plan(&cfg, Mode::Inference { max_batch: 1 }).unwrap();
        let r = verify(&lie, &model, None).map(|_| ());
        assert_eq!(reason(r), want, "{key}");
    }
}

#[test]
fn lying_layer_and_expert_counts_fail_at_once() {
    let moe = MoeConfig { num_experts: 2, top_k: 1, capacity: Capacity::Absolute(4), alpha: 0.0 };
    let t = TransformerConfig {
        embed_dim: 8,
        ffn_dim: 8,
        num_heads: 2,
        num_groups: 1,
        max_seq_len: 4,
        moe: Some(moe),
        ..Default::default()
    };
    let (_, _, bytes) = saved(&ModelConfig::Transformer(t), 3);
    let start = std::time::Instant::now();
    for (key, value) in [("num_layers", "1000000000"), ("num_experts", "100000000")] {
        let lie = with_metadata(&bytes, key, value);
        let cfg = Header::parse(&lie).unwrap().config().unwrap();
        let model = Model::plan(&cfg, Mode::Inference { max_batch: 1 }).unwrap();
        let r = verify(&lie, &model, None).map(|_| ());
        assert_eq!(reason(r), "tensors missing: every parameter must be present", "{key}");
    }
    assert!(start.elapsed().as_secs_f64() < 1.0, "{:?}", start.elapsed());
}

#[test]
fn a_checkpoint_of_another_model_is_refused() {
    let (_, _, bytes) = saved(&mlp(), 1);
    let other = ModelConfig::Mlp(MlpConfig {
        n_in: 3,
        latent_dims: heapless::Vec::from_slice(&[5, 2]).unwrap(),
        n_out: 2,
        act: Activation::Tanh,
    });
    let model = Model::plan(&other, Mode::Inference { max_batch: 1 }).unwrap();
    assert_eq!(reason(load_into(&model, &bytes).0), "shape differs from the model's");
    let small = vec![0u8; 10];
    let mut arena = vec![0.0; model.report().total_floats()];
    let net = Net::new(model, &mut arena).unwrap();
    let mut out = small;
    assert!(matches!(net.save_checkpoint(&mut out), Err(Error::BadLen { what: "checkpoint buffer", .. })));
}

#[test]
fn training_checkpoints_carry_optimizer_state_and_progress() {
    for optimizer in
        [Optimizer::adam(1e-2), Optimizer::sgd(0.1).with_momentum(0.9).unwrap(), Optimizer::rmsprop(1e-2)]
    {
        let model = Model::plan(&mlp(), Mode::Training { max_batch: 4, optimizer }).unwrap();
        let mut arena = vec![0.0; model.report().total_floats()];
        let mut net = Net::new(model.clone(), &mut arena).unwrap();
        net.init_params(2);
        let config =
            crate::TrainConfig { epochs: 1, schedule: crate::Schedule::Constant, clip_grad_norm: None };
        let mut trainer = Trainer::new(net, optimizer, config).unwrap();
        let (x, y) = ([0.1f32, -0.3, 0.5, 0.2, 0.7, -0.1], [0.3f32, -0.2, 0.1, 0.4]);
        for _ in 0..3 {
            trainer.train_step(&x, &y).unwrap();
        }
        let mut bytes = vec![0u8; trainer.checkpoint_len().unwrap()];
        let n = trainer.save_checkpoint(&mut bytes).unwrap();
        let bytes = &bytes[..n];
        let h = Header::parse(bytes).unwrap();
        assert_eq!(h.progress(), Some(Progress { epochs: 0, steps: 3 }));
        assert!(h.optimizer_name().unwrap().eq_str(optimizer.name()));
        // A fresh trainer resumes exactly: the next step gives identical parameters.
        let mut arena2 = vec![0.0; model.report().total_floats()];
        let net2 = Net::new(model.clone(), &mut arena2).unwrap();
        let mut resumed = Trainer::new(net2, optimizer, config).unwrap();
        assert_eq!(resumed.load_checkpoint(bytes).unwrap(), Progress { epochs: 0, steps: 3 });
        assert_eq!(resumed.steps(), 3);
        trainer.train_step(&x, &y).unwrap();
        resumed.train_step(&x, &y).unwrap();
        assert_eq!(trainer.net().params(), resumed.net().params(), "{}", optimizer.name());
        // Counters out of range are refused before anything is copied: all or nothing.
        for (from, to) in [
            ("\"regkern.steps\":\"3\"", "\"regkern.steps\":\"18446744073709551615\""),
            ("\"regkern.epochs\":\"0\"", "\"regkern.epochs\":\"4\""),
        ] {
            let lie = rewritten(bytes, |j| without_crc(j).replace(from, to));
            let before = (resumed.net().params().to_vec(), resumed.steps());
            let r = resumed.load_checkpoint(&lie).map(|_| ());
            assert!(reason(r).starts_with("training progress"), "{to}");
            assert_eq!((resumed.net().params().to_vec(), resumed.steps()), before, "{to}");
        }
        // A NaN in the last tensor (optimizer state, checked after the parameters would be) is
        // refused with the parameters, the optimizer state and the step count untouched.
        let mut nan = rewritten(bytes, without_crc);
        let end = nan.len();
        nan[end - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
        let before = (resumed.net().params().to_vec(), resumed.steps());
        let (mut a, mut b) = (vec![0u8; n + 64], vec![0u8; n + 64]);
        let len = resumed.save_checkpoint(&mut a).unwrap();
        assert_eq!(reason(resumed.load_checkpoint(&nan).map(|_| ())), "tensor holds NaN or infinite values");
        assert_eq!((resumed.net().params().to_vec(), resumed.steps()), before);
        assert_eq!(resumed.save_checkpoint(&mut b).unwrap(), len);
        assert_eq!(a, b, "a refused load changed the optimizer state");
        // Its parameters alone load into an inference net (the optimizer state is skipped).
        let infer = Model::plan(&mlp(), Mode::Inference { max_batch: 1 }).unwrap();
        let (r, _) = load_into(&infer, bytes);
        r.unwrap();
        // A parameters-only checkpoint cannot resume training.
        let mut plain = vec![0u8; resumed.net().checkpoint_len().unwrap()];
        resumed.net().save_checkpoint(&mut plain).unwrap();
        assert!(matches!(resumed.load_checkpoint(&plain), Err(Error::BadCheckpoint { .. })));
    }
}

/// The header's top-level items (`"name":{...}`), split at depth-0 commas.
fn items(json: &str) -> Vec<String> {
    let inner = &json.trim_end()[1..json.trim_end().len() - 1];
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(inner[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(inner[start..].to_string());
    out
}

/// Many tensors (an MoE of hundreds of experts): a file in regkern's order is checked in one
/// pass; the same tensors in another order (scattered, as no writer does) are compared pairwise,
/// and load to the same parameters up to 1024 tensors, and are refused beyond.
#[test]
fn files_of_thousands_of_tensors_load_in_regkerns_order_and_bounded_in_any_other() {
    let moe = |num_experts| {
        let moe = Some(MoeConfig { num_experts, top_k: 1, capacity: Capacity::Factor(1.0), alpha: 0.0 });
        ModelConfig::Transformer(TransformerConfig {
            embed_dim: 2,
            ffn_dim: 2,
            num_heads: 1,
            num_groups: 1,
            num_layers: 1,
            max_seq_len: 2,
            moe,
            ..TransformerConfig::default()
        })
    };
    for (experts, any_order_loads) in [(250, true), (600, false)] {
        let (model, params, bytes) = saved(&moe(experts), 3);
        assert!(model.param_count() > 4 * experts);
        let (r, loaded) = load_into(&model, &bytes);
        r.unwrap();
        assert_eq!(loaded, params, "{experts} experts in regkern's order");
        let scattered = rewritten(&bytes, |j| {
            let (meta, mut tensors): (Vec<_>, Vec<_>) =
                items(&without_crc(j)).into_iter().partition(|i| i.starts_with("\"__metadata__\""));
            // A permutation that scatters neighbours (7919 is prime, so coprime with the count).
            let n = tensors.len();
            tensors = (0..n).map(|i| tensors[(i * 7919) % n].clone()).collect();
            format!("{{{}}}", meta.into_iter().chain(tensors).collect::<Vec<_>>().join(","))
        });
        let (r, loaded) = load_into(&model, &scattered);
        if any_order_loads {
            r.unwrap();
            assert_eq!(loaded, params, "{experts} experts scattered");
        } else {
            assert_eq!(reason(r), "more than 1024 tensors, not in the model's order");
            assert!(loaded.iter().all(|&v| v == 7.0));
        }
    }
}
