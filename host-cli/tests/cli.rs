//! The `regkern` binary end to end: JSON output, plans, run directories, checkpoints and
//! `predict`, user data, resuming, and clear errors for bad flags.

use std::process::{Command, Output};

/// Run the binary in a scratch directory, where default run directories (`runs/...`) go.
fn regkern(args: &[&str]) -> Output {
    let cwd = std::env::temp_dir().join("regkern-cli-tests");
    std::fs::create_dir_all(&cwd).unwrap();
    Command::new(env!("CARGO_BIN_EXE_regkern")).args(args).current_dir(cwd).output().expect("regkern runs")
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
    // Floats as written (the default --lr 1e-3), not their f64 widening 0.0010000000474974513.
    assert_eq!(v["config"]["lr"].to_string(), "0.001");
    assert_eq!(v["config"]["weight_decay"].to_string(), "0.0");
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
        let o = small_transformer("train", &["--attention_type", attention], &["--json"]);
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

/// A one-epoch run of a small transformer (E 16, H 4, G 2, F 32) on 64 samples with the flags
/// `mode` (e.g. `--autoregressive`, `--encoderdecoder`): `args` after the common flags.
fn small_transformer(command: &str, mode: &[&str], args: &[&str]) -> Output {
    let mut full = vec![command, "--type", "transformer"];
    full.extend_from_slice(mode);
    full.extend(["--epochs", "1", "--train_size", "64"]);
    full.extend(["--val_size", "32", "--embed_dim", "16", "--num_heads", "4", "--num_groups", "2"]);
    full.extend(["--ffn_dim", "32"]);
    full.extend_from_slice(args);
    regkern(&full)
}

/// A small autoregressive run: `args` after the common flags.
fn small_ar(command: &str, args: &[&str]) -> Output {
    small_transformer(command, &["--autoregressive"], args)
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
    small_transformer("train", &["--encoderdecoder"], args)
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
    assert!(out.contains("training transformer on the reverse task"), "{out}");
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
    // Planned for the task's 32 positions (or --seq_len), not max_seq_len's 128.
    let kv = |t: &str, seq: &str| {
        let args = ["plan", "--type", "transformer", "--autoregressive", "--kv_cache", t, "--seq_len", seq];
        let o = regkern(&[&args[..], &["--json"]].concat());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["params"][2]["shape"], serde_json::json!([128, 64]), "pos_embed keeps max_seq_len rows");
        v["inference"]["kv_cache"].as_u64().unwrap()
    };
    assert_eq!(
        kv("f32", "32"),
        2 * 2 * 32 * 32 * 32 * 4,
        "k and v, 2 layers, batch 32, 32 positions, G·D 32"
    );
    assert_eq!(kv("f32", "128"), 4 * kv("f32", "32"));
    assert_eq!(kv("f16", "32"), kv("f32", "32") / 2);
    assert_eq!(kv("bf16", "32"), kv("f32", "32") / 2);
    let o = regkern(&["plan", "--type", "transformer", "--seq_len", "129"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--max_seq_len 128"));
    // The README's default experiment fits in 12 MB for training.
    let o = regkern(&["plan", "--type", "transformer", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["training"]["total"].as_u64().unwrap() <= 12_000_000, "{}", v["training"]["total"]);
    // --lean_memory keeps no attention probabilities (2 layers × batch 32 × 8 heads × 32 × 32
    // floats), norm outputs (2 per layer and the final one, 1024 tokens × E 64 each) or FFN
    // post-activations (1024 × F 128 per layer): that many floats fewer in acts; a second 32 × 32
    // tile more in scratch; inference is unchanged.
    let o = regkern(&["plan", "--type", "transformer", "--json", "--lean_memory"]);
    let lean: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(lean["lean_memory"], true);
    let acts = |v: &serde_json::Value| v["training"]["acts"].as_u64().unwrap();
    let (probs, norms, hidden) = (2 * 32 * 8 * 32 * 32, (2 * 2 + 1) * 1024 * 64, 2 * 1024 * 128);
    assert_eq!(acts(&v) - acts(&lean), (probs + norms + hidden) * 4);
    assert_eq!(lean["inference"], v["inference"]);
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

/// Run regkern with `full`: it must fail, with `msg` in its error and no panic.
fn refused(full: &[&str], msg: &str) {
    let o = regkern(full);
    assert!(!o.status.success(), "{full:?} succeeded");
    let err = stderr(&o);
    assert!(err.contains(msg), "{full:?}: expected {msg:?} in stderr:\n{err}");
    assert!(!err.contains("panicked"), "{full:?} panicked:\n{err}");
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
        refused(&full, msg);
    }
}

/// A flag the chosen model would ignore is refused, naming what it needs; `plan` and `sweep`
/// refuse it too, and the same flag on a model it applies to runs.
#[test]
fn inapplicable_flags_are_refused_naming_what_they_need() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--type", "linear", "--num_heads", "3"],
            "--num_heads applies to --type transformer, not --type linear",
        ),
        (
            &["--type", "nlinear", "--embed_dim", "32"],
            "--embed_dim applies to --type transformer, not --type nlinear",
        ),
        (&["--type", "linear", "--attention_type", "mha"], "--attention_type applies to --type transformer"),
        (&["--type", "linear", "--num_groups", "2"], "--num_groups applies to --type transformer"),
        (&["--type", "nlinear", "--ffn_dim", "64"], "--ffn_dim applies to --type transformer"),
        (&["--type", "linear", "--ffn_latent_dim", "64"], "--ffn_dim applies to --type transformer"),
        (&["--type", "linear", "--num_layers", "3"], "--num_layers applies to --type transformer"),
        (&["--type", "linear", "--max_seq_len", "64"], "--max_seq_len applies to --type transformer"),
        (&["--type", "nlinear", "--seq_len", "8"], "--seq_len applies to --type transformer"),
        (&["--type", "linear", "--latent_dims", "8,4"], "--latent_dims applies to --type nlinear"),
        (&["--type", "transformer", "--custom_act", "tanh"], "--custom_act applies to --type nlinear"),
        (
            &["--type", "transformer", "--num_experts", "4"],
            "--num_experts needs --type transformer with --moe",
        ),
        (&["--type", "transformer", "--topk", "1"], "--topk needs --type transformer with --moe"),
        (&["--type", "transformer", "--capacity", "8"], "--capacity needs --type transformer with --moe"),
        (
            &["--type", "linear", "--capacity_factor", "2"],
            "--capacity_factor needs --type transformer with --moe",
        ),
        (&["--type", "transformer", "--alpha", "0.1"], "--alpha needs --type transformer with --moe"),
        (
            &["--type", "transformer", "--num_encoder_layers", "3"],
            "--num_encoder_layers needs --type transformer with --encoderdecoder",
        ),
        (
            &["--type", "transformer", "--autoregressive", "--num_decoder_layers", "1"],
            "--num_decoder_layers needs --type transformer with --encoderdecoder",
        ),
        (&["--input_dim", "3"], "--input_dim describes user data: it needs --data FILE"),
        (&["--type", "transformer", "--output_dim", "2"], "--output_dim describes user data"),
        (&["--val_fraction", "0.5"], "--val_fraction describes user data"),
        (&["--header", "yes"], "--header describes user data"),
        (
            &["--type", "transformer", "--encoderdecoder", "--target_len", "4"],
            "--target_len needs --data FILE",
        ),
    ];
    for (args, msg) in cases {
        for command in ["train", "plan"] {
            if command == "plan"
                && args.iter().any(|a| {
                    ["--val_fraction", "--header", "--input_dim", "--output_dim", "--target_len"].contains(a)
                })
            {
                continue; // plan takes no user data
            }
            let full: Vec<&str> = [command].into_iter().chain(args.iter().copied()).collect();
            refused(&full, msg);
        }
    }
    let o = regkern(&["sweep", "--type", "linear", "--num_heads", "2,4", "--epochs", "1"]);
    assert!(stderr(&o).contains("--num_heads applies to --type transformer"), "{}", stderr(&o));
    // The seed's names, and a MoE flag where it applies.
    let o = regkern(&[
        "train",
        "--type",
        "transformer",
        "--use_moe",
        "--num_experts",
        "4",
        "--ffn_latent_dim",
        "16",
        "--embed_dim",
        "16",
        "--num_heads",
        "4",
        "--num_groups",
        "2",
        "--train_size",
        "64",
        "--val_size",
        "32",
        "--epochs",
        "1",
        "--no_logdir",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["config"]["transformer"]["ffn_dim"], 16, "{v}");
    assert_eq!(v["config"]["transformer"]["moe"]["num_experts"], 4, "{v}");
}

/// The f32 values of a JSON array (written by regkern as f32 widened to f64).
fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number") as f32).collect()
}

/// What a training run printed, its run directory's model reproduces bit for bit: the values
/// `generate` printed after a prompt (autoregressive, through the f32 KV cache or without one),
/// and the greedy decoding of a validation source (encoder-decoder) through `predict`.
#[test]
fn generate_and_predict_from_a_checkpoint_reproduce_the_training_run() {
    let dir = scratch("from-checkpoint");
    let prompt = "0.1,0.25,0.4,0.5";
    for cache in ["f32", "off"] {
        let run = dir.join(format!("ar-{cache}"));
        let trained = small_ar(
            "generate",
            &[
                "--logdir",
                run.to_str().unwrap(),
                "--prompt",
                prompt,
                "--steps",
                "9",
                "--kv_cache",
                cache,
                "--json",
            ],
        );
        assert!(trained.status.success(), "{}", stderr(&trained));
        let want: serde_json::Value = serde_json::from_slice(&trained.stdout).unwrap();
        let model = run.join("model.safetensors");
        let args = ["generate", "--checkpoint", model.to_str().unwrap(), "--prompt", prompt, "--steps", "9"];
        let o = regkern(&[&args[..], &["--kv_cache", cache, "--json"]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let bits = |v: &serde_json::Value| f32s(v).iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got["generated"]), bits(&want["generated"]), "kv_cache {cache}");
        assert_eq!(got["kv_cache"], want["kv_cache"]);
    }
    // Training flags have no place beside a checkpoint, and a prompt is needed.
    let model = dir.join("ar-f32").join("model.safetensors");
    let m = model.to_str().unwrap();
    let o = regkern(&["generate", "--checkpoint", m, "--prompt", prompt, "--num_layers", "3"]);
    assert!(stderr(&o).contains("--num_layers configures a model to train"), "{}", stderr(&o));
    let o = regkern(&["generate", "--checkpoint", m]);
    assert!(stderr(&o).contains("--checkpoint needs --prompt"), "{}", stderr(&o));

    let run = dir.join("encdec");
    let trained = small_encdec(&["--logdir", run.to_str().unwrap(), "--json"]);
    assert!(trained.status.success(), "{}", stderr(&trained));
    let summary: serde_json::Value = serde_json::from_slice(&trained.stdout).unwrap();
    let example = &summary["greedy_decode"]["example"];
    let (source, decoded) = (f32s(&example["source"]), f32s(&example["decoded"]));
    let csv = dir.join("source.csv");
    let row: Vec<String> = source.iter().map(|x| x.to_string()).collect();
    std::fs::write(&csv, row.join(",") + "\n").unwrap();
    let model = run.join("model.safetensors");
    let target_len = decoded.len().to_string();
    let o = regkern(&[
        "predict",
        "--checkpoint",
        model.to_str().unwrap(),
        "--input",
        csv.to_str().unwrap(),
        "--target_len",
        &target_len,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got: Vec<f32> =
        String::from_utf8_lossy(&o.stdout).trim().split(',').map(|v| v.parse().expect("a number")).collect();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&decoded));
    let o = regkern(&["generate", "--checkpoint", model.to_str().unwrap(), "--prompt", prompt]);
    assert!(stderr(&o).contains("generate needs an autoregressive transformer"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("regkern-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn small_mlp(logdir: &std::path::Path, extra: &[&str]) -> Output {
    let mut args =
        vec!["train", "--type", "nlinear", "--latent_dims", "16,8", "--train_size", "256", "--val_size"];
    args.extend(["64", "--logdir", logdir.to_str().unwrap()]);
    args.extend_from_slice(extra);
    regkern(&args)
}

#[test]
fn a_run_directory_holds_metrics_plots_events_and_checkpoints() {
    let dir = scratch("rundir").join("run");
    let o = small_mlp(&dir, &["--epochs", "4", "--plot_every", "2", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(printed, saved, "summary.json is what --json prints");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config, printed["config"]);
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "epoch,step,train_loss,val_loss,lr,grad_norm");
    assert_eq!(lines.len(), 5);
    assert!(lines[4].starts_with("4,16,"), "{}", lines[4]);
    let last_val: f64 = lines[4].split(',').nth(3).unwrap().parse().unwrap();
    assert_eq!(last_val as f32, printed["final_val_loss"].as_f64().unwrap() as f32);
    for f in ["model.safetensors", "best.safetensors", "checkpoint.safetensors", "predictions/epoch_0002.png"]
    {
        assert!(dir.join(f).is_file(), "{f}");
    }
    assert!(dir.join("predictions/epoch_0004.svg").is_file());
    assert!(!dir.join("predictions/epoch_0003.png").exists(), "plots every 2 epochs");
    let png = std::fs::read(dir.join("predictions/epoch_0004.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let events = printed["tensorboard_events"].as_str().unwrap();
    assert!(std::fs::metadata(events).unwrap().len() > 1000);
    // A second run into the same directory is refused; --no_logdir writes nothing.
    let o = small_mlp(&dir, &["--epochs", "1"]);
    assert!(stderr(&o).contains("already holds a run"), "{}", stderr(&o));
    let o = regkern(&["train", "--type", "linear", "--epochs", "1", "--no_logdir", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["logdir"].is_null());
}

#[test]
fn resuming_a_run_gives_the_uninterrupted_result() {
    let dir = scratch("resume");
    let (a, b) = (dir.join("straight"), dir.join("resumed"));
    let run = |d: &std::path::Path, extra: &[&str]| {
        // A constant rate: cosine schedules follow each invocation's --epochs, so a run resumed
        // with a larger --epochs than it was started with takes another path (see README).
        let o = small_mlp(d, &[&["--optimizer", "rmsprop", "--json"], extra].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let straight = run(&a, &["--epochs", "6"]);
    run(&b, &["--epochs", "3"]);
    let resumed = run(&b, &["--epochs", "6", "--resume"]);
    assert_eq!(resumed["final_val_loss"], straight["final_val_loss"]);
    assert_eq!(resumed["best_val_loss"], straight["best_val_loss"]);
    assert_eq!(resumed["steps"], straight["steps"]);
    assert_eq!(
        std::fs::read(a.join("model.safetensors")).unwrap(),
        std::fs::read(b.join("model.safetensors")).unwrap()
    );
    let csv = |d: &std::path::Path| std::fs::read_to_string(d.join("metrics.csv")).unwrap();
    let strip = |s: String| s.lines().map(|l| l.rsplit_once(',').unwrap().0.to_string()).collect::<Vec<_>>();
    // The same rows, up to grad_norm (the last column, identical too, but not what a resume
    // promises).
    assert_eq!(strip(csv(&a)), strip(csv(&b)));
    // Nothing left to do: the summary again, and a note; fewer epochs than trained, another
    // model, or no checkpoint: clear errors.
    let o = small_mlp(&b, &["--epochs", "6", "--resume", "--optimizer", "rmsprop", "--json"]);
    assert!(
        o.status.success() && stderr(&o).contains("already trained 6 epochs: nothing left"),
        "{}",
        stderr(&o)
    );
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&again["final_val_loss"], &again["steps"]),
        (&straight["final_val_loss"], &straight["steps"])
    );
    let o = small_mlp(&b, &["--epochs", "5", "--resume", "--optimizer", "rmsprop"]);
    assert!(!o.status.success() && stderr(&o).contains("more than --epochs 5"), "{}", stderr(&o));
    // A flag that contradicts the run's is refused, naming it and both values.
    let o = small_mlp(&b, &["--epochs", "9", "--resume", "--optimizer", "rmsprop", "--custom_act", "tanh"]);
    let want =
        format!("--custom_act tanh contradicts the run in {}, trained with --custom_act relu", b.display());
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    let o = small_mlp(&b, &["--epochs", "9", "--resume", "--optimizer", "adam"]);
    assert!(stderr(&o).contains("--optimizer adam contradicts"), "{}", stderr(&o));
    // The same value written another way is no contradiction, and --logdir alone takes the
    // run's flags (here: nothing left to train).
    let o = small_mlp(&b, &["--epochs", "6", "--resume", "--optimizer", "rmsprop", "--lr", "1e-3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = regkern(&["train", "--logdir", b.to_str().unwrap(), "--resume", "--json"]);
    assert!(o.status.success() && stderr(&o).contains("nothing left"), "{}", stderr(&o));
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again["config"]["optimizer"], "rmsprop");
    assert_eq!(again["final_val_loss"], straight["final_val_loss"]);
    let o = regkern(&["train", "--logdir", dir.join("never").to_str().unwrap(), "--resume"]);
    assert!(stderr(&o).contains("holds no config.json"), "{}", stderr(&o));
    // A run killed before its first checkpoint resumes from the beginning.
    let o = small_mlp(&dir.join("nothing"), &["--epochs", "2", "--resume"]);
    assert!(o.status.success() && stderr(&o).contains("holds no checkpoint yet"), "{}", stderr(&o));
}

#[test]
fn predict_runs_a_checkpoint_alone_over_csv_rows() {
    let dir = scratch("predict");
    let run = dir.join("ed");
    let o = regkern(&[
        "train",
        "--type",
        "transformer",
        "--encoderdecoder",
        "--epochs",
        "1",
        "--train_size",
        "32",
        "--val_size",
        "8",
        "--embed_dim",
        "16",
        "--num_heads",
        "4",
        "--num_groups",
        "2",
        "--ffn_dim",
        "32",
        "--logdir",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let input = dir.join("in.csv");
    std::fs::write(&input, "# two sources of 5\n0.1,0.2,0.3,0.4,0.5\n-1,0,1,0.5,-0.5\n").unwrap();
    let ckpt = run.join("model.safetensors");
    let (ckpt, input_s) = (ckpt.to_str().unwrap(), input.to_str().unwrap());
    let o = regkern(&["predict", "--checkpoint", ckpt, "--input", input_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let rows: Vec<Vec<f32>> =
        out.lines().map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.len() == 5), "a greedy decode as long as the source: {out}");
    let o = regkern(&["predict", "--checkpoint", ckpt, "--input", input_s, "--target_len", "3", "--output"]);
    assert!(!o.status.success(), "--output needs a value");
    let out_path = dir.join("out.csv");
    let o = regkern(&[
        "predict",
        "--checkpoint",
        ckpt,
        "--input",
        input_s,
        "--target_len",
        "3",
        "--output",
        out_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert_eq!(text.lines().map(|l| l.split(',').count()).collect::<Vec<_>>(), [3, 3]);
    // The first 3 decoded values do not depend on how many follow (greedy, causal).
    for (short, long) in text.lines().zip(&rows) {
        let short: Vec<f32> = short.split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(short, long[..3]);
    }
    // Bad inputs and bad checkpoints are errors, not panics.
    std::fs::write(&input, "1,2,3\n4,5\n").unwrap();
    let o = regkern(&["predict", "--checkpoint", ckpt, "--input", input_s]);
    assert!(stderr(&o).contains("line 2 has 2 values"), "{}", stderr(&o));
    let bytes = std::fs::read(run.join("model.safetensors")).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let o = regkern(&["predict", "--checkpoint", cut.to_str().unwrap(), "--input", input_s]);
    assert!(stderr(&o).contains("invalid checkpoint"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn train_learns_from_a_csv_file_and_rejects_bad_ones() {
    let dir = scratch("data");
    let path = dir.join("train.csv");
    // y = 2a - b + 0.5 on a grid of 400 points.
    let mut csv = String::from("a,b,y\n");
    for i in 0..400 {
        let (a, b) = ((i % 20) as f32 / 10.0 - 1.0, (i / 20) as f32 / 10.0 - 1.0);
        csv += &format!("{a},{b},{}\n", 2.0 * a - b + 0.5);
    }
    std::fs::write(&path, csv).unwrap();
    let p = path.to_str().unwrap();
    let o = regkern(&[
        "train",
        "--type",
        "linear",
        "--data",
        p,
        "--epochs",
        "200",
        "--lr",
        "0.05",
        "--no_logdir",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["train_samples"].as_u64(), v["val_samples"].as_u64()), (Some(320), Some(80)));
    assert!(v["final_val_loss"].as_f64().unwrap() < 1e-4, "{}", v["final_val_loss"]);
    assert!(v["config"]["task"].is_null());
    // Rows of 6 values: 5 sequence values and a target for transformer regression; a series of 6
    // for next-value prediction; a source of 3 and a target of 3 for an encoder-decoder.
    let seq = dir.join("seq.csv");
    std::fs::write(&seq, (0..40).map(|i| format!("{},1,2,3,4,5\n", i as f32 / 40.0)).collect::<String>())
        .unwrap();
    let small = [
        "--epochs",
        "1",
        "--embed_dim",
        "8",
        "--num_heads",
        "2",
        "--num_groups",
        "1",
        "--ffn_dim",
        "8",
        "--no_logdir",
        "--json",
    ];
    for mode in [None, Some("--autoregressive"), Some("--encoderdecoder")] {
        let mut args = vec!["train", "--type", "transformer", "--data", seq.to_str().unwrap()];
        args.extend(mode);
        args.extend(small);
        let o = regkern(&args);
        assert!(o.status.success(), "{mode:?}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["train_samples"], 32, "{mode:?}");
    }
    let bad: &[(&str, &str)] = &[
        ("1,2,3\n4,5,6\n7,8\n", "line 3 has 2 values, line 1 has 3"),
        ("1,2,3\n4,x,6\n", "line 2, column 2: \"x\" is not a number"),
        ("1\n2\n3\n", "rows have 1 values; they need inputs and 1 target(s)"),
        ("1,2\n", "training and validation need at least 2"),
    ];
    for (text, msg) in bad {
        std::fs::write(&path, text).unwrap();
        let o = regkern(&["train", "--type", "linear", "--data", p, "--epochs", "1", "--no_logdir"]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(msg), "{text:?}: expected {msg:?} in {}", stderr(&o));
    }
    let o = regkern(&["train", "--type", "linear", "--data", "/no/such/file.csv", "--no_logdir"]);
    assert!(stderr(&o).contains("cannot read /no/such/file.csv"), "{}", stderr(&o));
}

#[test]
fn a_diverging_run_saves_nothing_from_the_diverged_epoch() {
    let dir = scratch("diverge").join("run");
    let o = regkern(&[
        "train",
        "--type",
        "linear",
        "--optimizer",
        "sgd",
        "--lr",
        "1.2",
        "--epochs",
        "50",
        "--logdir",
        dir.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("non-finite loss") && err.contains("Nothing was saved from the diverged epoch"),
        "{err}"
    );
    assert!(!dir.join("model.safetensors").exists(), "no final model from a diverged run");
    assert!(!dir.join("summary.json").exists());
    let rows = std::fs::read_to_string(dir.join("metrics.csv")).unwrap().lines().count() - 1;
    // The checkpoint is the last completed epoch's, and loads.
    let bytes = std::fs::read(dir.join("checkpoint.safetensors")).unwrap();
    let h = regkern_core::checkpoint::Header::parse(&bytes).unwrap();
    assert_eq!(h.progress().unwrap().epochs as usize, rows);
}

/// Sizes no machine holds are refused at once, naming what they need, before anything is
/// allocated: never an abort in the allocator, a capacity-overflow panic or a hang.
#[test]
fn huge_sizes_are_clear_errors_within_a_second() {
    let logdir = scratch("huge");
    let logdir = logdir.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["train", "--type", "linear", "--batch_size", "1073741824"],
        &["train", "--type", "nlinear", "--latent_dims", "100000000,100000000"],
        &[
            "train",
            "--type",
            "transformer",
            "--embed_dim",
            "1048576",
            "--num_heads",
            "1",
            "--num_groups",
            "1",
        ],
        &["train", "--type", "transformer", "--ffn_dim", "4000000000"],
        &["train", "--type", "transformer", "--num_layers", "1000000000"],
        &["train", "--type", "transformer", "--moe", "--num_experts", "100000000"],
        &["train", "--type", "linear", "--train_size", "18446744073709551615"],
        &["train", "--type", "linear", "--max_memory", "1K"],
        &["generate", "--type", "transformer", "--autoregressive", "--steps", "18446744073709551615"],
    ];
    for args in cases {
        let start = std::time::Instant::now();
        let o = regkern(&[*args, &["--logdir", logdir][..]].concat());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("needs") || err.contains("would hold") || err.contains("overflows"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(start.elapsed().as_secs_f64() < 1.0, "{args:?} took {:?}", start.elapsed());
    }
    // Planning answers at once for any size.
    let o = regkern(&["plan", "--type", "transformer", "--num_layers", "10000000", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["param_tensors"], 3 + 16 * 10_000_000 + 4);
    assert!(v["params"].as_array().unwrap().is_empty(), "not listed without --params");
    // predict: a batch no machine holds.
    let o = regkern(&["predict", "--checkpoint", "/nonexistent", "--batch_size", "18446744073709551615"]);
    assert_eq!(o.status.code(), Some(1));
}

/// `bench --json`: the machine, both peaks and every requested workload with its figures; a
/// baseline gives ratios; a bad workload name is an error naming it.
#[test]
fn bench_reports_workloads_peaks_and_baseline_ratios() {
    let dir = std::env::temp_dir().join("regkern-cli-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let baseline = dir.join("bench-baseline.json");
    let base = serde_json::json!({"source": "pytorch", "torch": "2.15", "threads": 1, "cpu": "test CPU",
        "workloads": {"P1": {"median_ms": 0.5}, "K1/64": {"median_ms": 0.004, "gflops": 130.0},
                      "P3": {"median_ms": 30.0, "kept_fraction": 0.75}}});
    std::fs::write(&baseline, base.to_string()).unwrap();
    let o = regkern(&[
        "bench",
        "--workload",
        "P1,K1/64,P4,P3",
        "--steps",
        "5",
        "--warmup",
        "1",
        "--json",
        "--baseline",
        baseline.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON object");
    assert!(v["cpu"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v["gemm_peak_gflops"].as_f64().is_some_and(|g| g > 0.0));
    assert_eq!(v["threads"], 1);
    let w = v["workloads"].as_object().unwrap();
    assert_eq!(w.keys().collect::<Vec<_>>(), ["K1/64", "P1", "P3", "P4"]);
    for (id, r) in w {
        let (lo, med, hi) =
            (r["min_ms"].as_f64().unwrap(), r["median_ms"].as_f64().unwrap(), r["max_ms"].as_f64().unwrap());
        assert!(0.0 < lo && lo <= med && med <= hi, "{id}: {r}");
        assert_eq!(r["steps"], 5, "{id}");
    }
    assert!(w["P1"]["matmul_gflops"].as_f64().is_some_and(|g| g > 0.0));
    assert!(w["P1"]["pct_gemm_peak"].as_f64().is_some());
    assert!(w["P1"]["speedup"].as_f64().is_some_and(|s| s > 0.0));
    assert!(w["P4"]["matmul_gflops"].is_null() && w["P4"]["speedup"].is_null());
    // P3's matmul work follows its routing: the shared part plus 6·2·E·F per kept assignment
    // of 2 · 1024 · 2 (at initialisation about half are kept; none are kept beyond capacity).
    let kept = w["P3"]["kept_fraction"].as_f64().expect("P3 reports its routing");
    assert!(0.3 < kept && kept <= 1.0, "{kept}");
    let flops = w["P3"]["matmul_flops_per_step"].as_f64().unwrap();
    let want = 208_023_552.0 + 98_304.0 * 4096.0 * kept;
    assert!((flops - want).abs() <= 1.0, "P3 FLOPs {flops}, want {want}");
    assert!(w["P3"]["matmul_gflops"].as_f64().is_some_and(|g| g > 0.0));

    let o = regkern(
        &["bench", "--workload", "P3", "--steps", "2", "--warmup", "0", "-q", "--baseline"]
            .into_iter()
            .chain([baseline.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("P3: the experts kept") && text.contains("GFLOP on average"), "{text}");
    assert!(text.contains("The baseline's experts kept 75.0% (0.510 GFLOP/step)"), "{text}");

    let o = regkern(&["bench", "--workload", "P9"]);
    assert!(!o.status.success() && stderr(&o).contains("--workload P9"), "{}", stderr(&o));
    let o = regkern(&["bench", "--threads", "0"]);
    assert!(!o.status.success() && stderr(&o).contains("--threads"), "{}", stderr(&o));
}
