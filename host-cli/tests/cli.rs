//! The `regkern` binary end to end: JSON output, plans, and clear errors for bad flags.

use std::process::{Command, Output};

fn regkern(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_regkern")).args(args).output().expect("regkern runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn train_json_reports_config_losses_and_time() {
    let o = regkern(&[
        "train",
        "--type",
        "nlinear",
        "--epochs",
        "3",
        "--latent_dims",
        "16,8",
        "--json",
        "--seed",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON object");
    assert_eq!(v["config"]["type"], "nlinear");
    assert_eq!(v["config"]["latent_dims"], serde_json::json!([16, 8]));
    assert_eq!(v["config"]["seed"], 2);
    assert_eq!(v["epochs"], 3);
    assert_eq!(v["steps"], 3 * 32);
    for key in ["final_train_loss", "final_val_loss", "best_val_loss", "wall_seconds"] {
        assert!(v[key].as_f64().is_some_and(f64::is_finite), "{key}: {}", v[key]);
    }
}

#[test]
fn kebab_case_aliases_work() {
    let o = regkern(&[
        "train",
        "--type",
        "nlinear",
        "--epochs",
        "1",
        "--latent-dims",
        "8",
        "--custom-act",
        "gelu",
        "--batch-size",
        "128",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["config"]["custom_act"].as_str(), v["config"]["batch_size"].as_u64()),
        (Some("gelu"), Some(128))
    );
}

#[test]
fn same_seed_same_numbers() {
    let run = || {
        let o = regkern(&["train", "--type", "linear", "--epochs", "2", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v["final_train_loss"].clone(), v["final_val_loss"].clone())
    };
    assert_eq!(run(), run());
}

#[test]
fn transformer_trains_with_every_attention_type() {
    for attention in ["mha", "mqa", "gqa"] {
        let o = regkern(&[
            "train",
            "--type",
            "transformer",
            "--attention_type",
            attention,
            "--epochs",
            "1",
            "--train_size",
            "64",
            "--val_size",
            "32",
            "--embed_dim",
            "16",
            "--num_heads",
            "4",
            "--num_groups",
            "2",
            "--json",
        ]);
        assert!(o.status.success(), "{attention}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let expected_groups = match attention {
            "mha" => 4,
            "mqa" => 1,
            _ => 2,
        };
        assert_eq!(v["config"]["transformer"]["num_groups"], expected_groups, "{attention}");
        assert!(v["final_val_loss"].as_f64().is_some_and(f64::is_finite));
    }
}

/// A small autoregressive run: `args` after the common flags.
fn small_ar(command: &str, args: &[&str]) -> Output {
    let mut full = vec![
        command,
        "--type",
        "transformer",
        "--autoregressive",
        "--epochs",
        "1",
        "--train_size",
        "64",
        "--val_size",
        "32",
        "--embed_dim",
        "16",
        "--num_heads",
        "4",
        "--num_groups",
        "2",
        "--ffn_dim",
        "32",
    ];
    full.extend_from_slice(args);
    regkern(&full)
}

#[test]
fn autoregressive_training_reports_free_running_generation() {
    let mut mse = Vec::new();
    for cache in ["off", "f32", "f16", "bf16"] {
        let o = small_ar("train", &["--kv_cache", cache, "--json"]);
        assert!(o.status.success(), "{cache}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["config"]["task"], "sine");
        assert_eq!(v["free_running"]["prompt"], 16);
        assert_eq!(v["free_running"]["steps"], 17);
        let expected_cache = if cache == "off" { serde_json::Value::Null } else { serde_json::json!(cache) };
        assert_eq!(v["free_running"]["kv_cache"], expected_cache);
        mse.push(v["free_running"]["mse"].as_f64().unwrap());
    }
    // The same trained model: caches change the free-running error by rounding only.
    assert!((mse[1] - mse[0]).abs() <= 1e-5 * mse[0], "f32 cache {} vs uncached {}", mse[1], mse[0]);
    assert!((mse[2] - mse[0]).abs() <= 1e-2 * mse[0], "f16 cache {} vs uncached {}", mse[2], mse[0]);
    assert!((mse[3] - mse[0]).abs() <= 5e-2 * mse[0], "bf16 cache {} vs uncached {}", mse[3], mse[0]);
}

/// A small encoder-decoder run on `reverse`: `args` after the common flags.
fn small_encdec(args: &[&str]) -> Output {
    let mut full = vec![
        "train",
        "--type",
        "transformer",
        "--encoderdecoder",
        "--epochs",
        "1",
        "--train_size",
        "64",
        "--val_size",
        "32",
        "--embed_dim",
        "16",
        "--num_heads",
        "4",
        "--num_groups",
        "2",
        "--ffn_dim",
        "32",
    ];
    full.extend_from_slice(args);
    regkern(&full)
}

#[test]
fn encoder_decoder_training_reports_greedy_decoding() {
    let mut mse = Vec::new();
    for cache in ["off", "f32"] {
        let o = small_encdec(&[
            "--num_encoder_layers",
            "1",
            "--num_decoder_layers",
            "2",
            "--kv_cache",
            cache,
            "--json",
        ]);
        assert!(o.status.success(), "{cache}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["config"]["task"], "reverse");
        assert_eq!(v["config"]["encoder_decoder"]["num_encoder_layers"], 1);
        assert_eq!(v["config"]["encoder_decoder"]["num_decoder_layers"], 2);
        let g = &v["greedy_decode"];
        let expected_cache = if cache == "off" { serde_json::Value::Null } else { serde_json::json!(cache) };
        assert_eq!(g["kv_cache"], expected_cache);
        let source: Vec<f64> = serde_json::from_value(g["example"]["source"].clone()).unwrap();
        let target: Vec<f64> = serde_json::from_value(g["example"]["target"].clone()).unwrap();
        assert_eq!(g["example"]["decoded"].as_array().unwrap().len(), 32);
        assert!(source.iter().rev().eq(target.iter()), "the example's target is its source reversed");
        mse.push(g["mse"].as_f64().unwrap());
    }
    // The same trained model decoded through the caches and by recomputation.
    assert!((mse[1] - mse[0]).abs() <= 1e-5 * mse[0], "cached {} vs uncached {}", mse[1], mse[0]);
    // Defaults: two blocks each, greedy decoding through an f32 cache; the text shows the example.
    let o = small_encdec(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("training transformer on task reverse"), "{out}");
    assert!(out.contains("greedy decoding of the validation set (f32 KV cache)"), "{out}");
    for row in ["  source ", "  target ", "  decoded "] {
        assert!(out.contains(row), "{row:?} in:\n{out}");
    }
    let o = regkern(&["plan", "--type", "transformer", "--encoderdecoder", "--params", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> =
        v["params"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names[0], "encoder.input_proj.weight");
    assert!(names.contains(&"decoder.layers.1.cross_attn.k_proj.weight"));
    assert!(names.contains(&"decoder.layers.0.norm3.bias"));
    assert_eq!(names.last(), Some(&"head.bias"));
    assert!(v["inference"]["kv_cache"].as_u64().unwrap() > 0, "greedy decoding's caches are planned");
}

#[test]
fn generate_prints_values_and_rejects_bad_requests() {
    let o = small_ar("generate", &["--steps", "20", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["generated"].as_array().unwrap().len(), 20);
    assert_eq!(v["prompt"].as_array().unwrap().len(), 16);
    assert_eq!(v["kv_cache"], "f32");
    assert!(v["mse"].as_f64().is_some_and(f64::is_finite), "compared with the validation truth");
    let o = small_ar(
        "generate",
        &["--prompt", "0.1, -0.2, 0.3", "--steps", "5", "--window", "4", "--kv_cache", "off"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("generated (5, no KV cache)"));
    let bad: &[(&[&str], &str)] = &[
        (&["--steps", "0"], "steps must be at least 1"),
        (&["--window", "0"], "window must be at least 1"),
        (&["--window", "129"], "window must not exceed max_seq_len"),
        (&["--prompt", "0.1,0.2,0.3", "--window", "2"], "prompt is longer than the context"),
        (&["--steps", "114"], "more than max_seq_len 128"),
        (&["--prompt", "0.1,x"], "--prompt: \"x\" is not a number"),
    ];
    for (args, msg) in bad {
        let o = small_ar("generate", args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr(&o).contains(msg), "{args:?}: expected {msg:?} in:\n{}", stderr(&o));
    }
    let o = regkern(&["generate", "--type", "transformer", "--epochs", "1"]);
    assert!(stderr(&o).contains("generate needs an autoregressive model"), "{}", stderr(&o));
}

#[test]
fn moe_training_prints_drop_rate_and_aux_loss() {
    let o = regkern(&[
        "train",
        "--type",
        "transformer",
        "--moe",
        "--num_experts",
        "4",
        "--topk",
        "2",
        "--capacity",
        "40",
        "--epochs",
        "2",
        "--train_size",
        "64",
        "--val_size",
        "32",
        "--embed_dim",
        "16",
        "--num_heads",
        "4",
        "--num_groups",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let epoch_lines: Vec<_> = out.lines().filter(|l| l.starts_with("epoch")).collect();
    assert_eq!(epoch_lines.len(), 2, "{out}");
    assert!(epoch_lines.iter().all(|l| l.contains("drop ") && l.contains("aux ")), "{out}");
    let o = regkern(&[
        "train",
        "--type",
        "transformer",
        "--moe",
        "--epochs",
        "1",
        "--train_size",
        "64",
        "--val_size",
        "32",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let drop = v["moe"]["drop_rate_last_epoch"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&drop), "drop rate {drop}");
    assert!(v["moe"]["aux_loss_last_epoch"].as_f64().unwrap() > 0.0);
    assert_eq!(v["config"]["transformer"]["moe"]["num_experts"], 8);
    let o = regkern(&["plan", "--type", "transformer", "--moe", "--num_experts", "4", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> =
        v["params"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"layers.1.ffn.router.weight") && names.contains(&"layers.0.ffn.experts.3.fc2.bias")
    );
    assert!(!names.iter().any(|n| n.starts_with("layers.0.ffn.fc1")), "no dense FFN beside the experts");
}

#[test]
fn plan_reports_a_transformer() {
    let o = regkern(&["plan", "--type", "transformer", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["type"], "transformer");
    assert_eq!(v["params"][2]["name"], "pos_embed.weight");
    assert_eq!(v["params"][2]["shape"], serde_json::json!([128, 64]));
    assert_eq!(v["inference"]["grads"], 0);
    assert!(v["training"]["acts"].as_u64().unwrap() > v["inference"]["acts"].as_u64().unwrap());
    assert_eq!(v["inference"]["kv_cache"], 0);
    // With a cache, the plan shows it; f16 halves it.
    let kv = |t: &str| {
        let o = regkern(&["plan", "--type", "transformer", "--autoregressive", "--kv_cache", t, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["inference"]["kv_cache"].as_u64().unwrap()
    };
    assert_eq!(kv("f32"), 2 * 2 * 32 * 128 * 32 * 4, "k and v, 2 layers, batch 32, 128 positions, G·D 32");
    assert_eq!(kv("f16"), kv("f32") / 2);
    assert_eq!(kv("bf16"), kv("f32") / 2);
}

#[test]
fn plan_prints_every_region_for_inference_and_training() {
    let o = regkern(&["plan", "--type", "nlinear", "--latent_dims", "128,64,32"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    for region in ["params", "grads", "opt_state", "acts", "act_grads", "scratch", "kv_cache", "total"] {
        assert!(out.contains(region), "no {region} in:\n{out}");
    }
    let o = regkern(&["plan", "--type", "nlinear", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["param_count"], 11_521);
    assert_eq!(v["inference"]["grads"], 0);
    assert_eq!(v["training"]["params"], 46_144);
    assert_eq!(v["params"][0]["name"], "layers.0.weight");
}

#[test]
fn bad_flags_are_clear_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["--type", "nlinear", "--latent_dims", ""], "--latent_dims is empty"),
        (&["--type", "nlinear", "--latent_dims", "64,0"], "at least 1"),
        (&["--type", "nlinear", "--latent_dims", "64,abc"], "not a positive whole number"),
        (&["--lr", "0"], "lr must be a positive"),
        (&["--lr", "-0.5"], "lr must be a positive"),
        (&["--lr", "nan"], "lr must be a positive"),
        (&["--epochs", "0"], "--epochs must be at least 1"),
        (&["--batch_size", "0"], "batch_size must be at least 1"),
        (&["--optimizer", "lbfgs"], "invalid value 'lbfgs'"),
        (&["--type", "cnn"], "invalid value 'cnn'"),
        (&["--momentum", "0.9"], "--momentum applies to sgd and rmsprop"),
        (&["--optimizer", "sgd", "--momentum", "-1"], "momentum must be >= 0"),
        (&["--clip_grad_norm", "0"], "clip_grad_norm must be a positive"),
        (&["--scheduler", "step", "--step_size", "0"], "step_size must be at least 1"),
        (&["--no-such-flag"], "unexpected argument"),
        (
            &["--type", "transformer", "--embed_dim", "60", "--num_heads", "8"],
            "num_heads must divide embed_dim",
        ),
        (&["--type", "transformer", "--num_groups", "3"], "num_groups must divide num_heads"),
        (&["--type", "transformer", "--num_groups", "16"], "num_groups must not exceed num_heads"),
        (&["--type", "transformer", "--num_groups", "0"], "num_groups must be at least 1"),
        (&["--type", "transformer", "--num_heads", "0"], "num_heads must be at least 1"),
        (&["--type", "transformer", "--embed_dim", "0"], "embed_dim must be at least 1"),
        (&["--type", "transformer", "--ffn_dim", "0"], "ffn_dim must be at least 1"),
        (&["--type", "transformer", "--num_layers", "0"], "num_layers must be at least 1"),
        (&["--type", "transformer", "--max_seq_len", "16"], "more than --max_seq_len 16"),
        (&["--type", "transformer", "--attention_type", "sparse"], "invalid value 'sparse'"),
        (&["--type", "nlinear", "--autoregressive"], "--autoregressive needs --type transformer"),
        (&["--type", "transformer", "--use_kv_cache"], "need --type transformer with --autoregressive or"),
        (&["--type", "transformer", "--kv_cache", "f16"], "need --type transformer with --autoregressive or"),
        (&["--type", "nlinear", "--encoderdecoder"], "--encoderdecoder needs --type transformer"),
        (&["--type", "transformer", "--encoderdecoder", "--autoregressive"], "cannot be used with"),
        (
            &["--type", "transformer", "--encoderdecoder", "--num_encoder_layers", "0"],
            "num_encoder_layers must be",
        ),
        (
            &["--type", "transformer", "--encoderdecoder", "--num_decoder_layers", "0"],
            "num_decoder_layers must be",
        ),
        (&["--type", "transformer", "--encoderdecoder", "--max_seq_len", "31"], "more than --max_seq_len 31"),
        (&["--type", "transformer", "--autoregressive", "--kv_cache", "f8"], "invalid value 'f8'"),
        (&["--type", "nlinear", "--moe"], "--moe needs --type transformer"),
        (&["--type", "transformer", "--moe", "--topk", "0"], "topk must be at least 1"),
        (&["--type", "transformer", "--moe", "--topk", "9"], "topk must not exceed num_experts"),
        (&["--type", "transformer", "--moe", "--num_experts", "0"], "num_experts must be at least 1"),
        (&["--type", "transformer", "--moe", "--capacity", "0"], "capacity must be at least 1"),
        (&["--type", "transformer", "--moe", "--capacity_factor", "0"], "capacity_factor must be a positive"),
        (&["--type", "transformer", "--moe", "--alpha", "-0.5"], "alpha must be >= 0"),
    ];
    for (args, msg) in cases {
        let mut full = vec!["train"];
        if !args.contains(&"--epochs") {
            full.extend(["--epochs", "1"]);
        }
        full.extend_from_slice(args);
        let o = regkern(&full);
        assert!(!o.status.success(), "{full:?} succeeded");
        let err = stderr(&o);
        assert!(err.contains(msg), "{full:?}: expected {msg:?} in stderr:\n{err}");
        assert!(!err.contains("panicked"), "{full:?} panicked:\n{err}");
    }
}
