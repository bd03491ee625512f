//! The C programs of `tests/c/`, compiled against `include/regkern.h` and linked with the
//! `libregkern.a` that cargo built beside this test (`target/<profile>/libregkern.a`): each must
//! compile with `-std=c11 -Wall -Wextra -Werror -pedantic` and exit 0. The header must also
//! compile alone as C11 and as C++17 with warnings as errors, and `header_cxx.cpp` must build
//! and run; the C compiler must lay out every struct of the header as the Rust definitions do.
//! Finally the C training run of `train_mlp.c` is replayed through regkern-core's Rust API and
//! the two loss curves must agree bit for bit.
//!
//! Needs `gcc` and `g++` on the PATH (the tests fail, saying so, without them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use regkern_core::schedule::Progress;
use regkern_core::{
    Activation, MlpConfig, Mode, Model, ModelConfig, Net, Optimizer, Schedule, TrainConfig, Trainer,
};

/// The programs `tests/c/` must hold (a missing one is an error; new ones run automatically).
const PROGRAMS: [&str; 8] = [
    "train_mlp",
    "predict_transformer",
    "generate_kv",
    "checkpoint_roundtrip",
    "error_paths",
    "firmware_link",
    "abi_layout",
    "abuse",
];

const C_FLAGS: [&str; 6] = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1"];
const CXX_FLAGS: [&str; 6] = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("ffi/ has a parent").to_path_buf()
}

/// The `libregkern.a` built for this test run. This test runs as
/// `target/<profile>/deps/c_programs-*`, and cargo builds the package's library, with all its
/// crate types, into the same `deps/` directory first; its file name carries no hash because the
/// library is also a cdylib. `cargo test` does not copy ("uplift") it to
/// `target/<profile>/libregkern.a` — only `cargo build` does — so that copy may be missing or
/// stale here, and serves only as a fallback.
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let candidates = [deps.join("libregkern.a"), deps.join("../libregkern.a")];
    let found = candidates.iter().find(|p| p.is_file());
    found
        .cloned()
        .unwrap_or_else(|| panic!("no libregkern.a in {}: cargo builds it with this test", deps.display()))
}

/// A scratch directory for this test's binaries, inside the target directory.
fn out_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c_programs").join(test);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// Run `cmd`, failing the test with a clear message when the tool is missing.
fn output(cmd: &mut Command) -> Output {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{tool}` ({e}): the C ABI tests compile C and C++ programs and need gcc and \
             g++ on the PATH (e.g. `apt-get install gcc g++`)"
        )
    })
}

fn describe(out: &Output) -> String {
    let tail = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    format!(
        "{}\n--- stdout (tail) ---\n{}\n--- stderr ---\n{}",
        out.status,
        tail(&out.stdout),
        tail(&out.stderr)
    )
}

/// Compile and link `src` (C or C++, by extension) against the header and the static library.
fn build(src: &Path, exe: &Path) -> Result<(), String> {
    let root = workspace();
    let cxx = src.extension().is_some_and(|e| e == "cpp");
    let mut cmd = Command::new(if cxx { "g++" } else { "gcc" });
    cmd.args(if cxx { CXX_FLAGS } else { C_FLAGS })
        .arg("-I")
        .arg(root.join("include"))
        .arg("-o")
        .arg(exe)
        .arg(src)
        .arg(static_lib())
        .arg("-lm");
    let out = output(&mut cmd);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("compiling {} failed: {}", src.display(), describe(&out)))
    }
}

/// Build and run one program; its stdout on success.
fn build_and_run(src: &Path, dir: &Path) -> Result<String, String> {
    let name = src.file_stem().expect("a file name").to_string_lossy().into_owned();
    let exe = dir.join(&name);
    build(src, &exe)?;
    let out = output(&mut Command::new(&exe));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{name} failed: {}", describe(&out)))
    }
}

#[test]
fn every_c_program_compiles_cleanly_and_passes() {
    let dir = workspace().join("tests/c");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/c exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    sources.sort();
    for name in PROGRAMS {
        assert!(
            sources.iter().any(|p| p.file_stem().is_some_and(|s| s == name)),
            "tests/c/{name}.c is missing"
        );
    }
    let out = out_dir("programs");
    let failures: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = sources.iter().map(|src| s.spawn(|| build_and_run(src, &out))).collect();
        runs.into_iter().filter_map(|r| r.join().expect("no panic").err()).collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} C programs failed:\n\n{}",
        failures.len(),
        sources.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_header_compiles_alone_as_c11_and_as_cxx17() {
    let header = workspace().join("include/regkern.h");
    for (compiler, lang, flags) in [("gcc", "c", C_FLAGS), ("g++", "c++", CXX_FLAGS)] {
        let out = output(Command::new(compiler).args(flags).args(["-fsyntax-only", "-x", lang]).arg(&header));
        assert!(out.status.success(), "{compiler} -x {lang} {flags:?} regkern.h: {}", describe(&out));
    }
}

#[test]
fn a_cxx17_program_builds_and_runs() {
    let src = workspace().join("tests/c/header_cxx.cpp");
    if let Err(e) = build_and_run(&src, &out_dir("cxx")) {
        panic!("{e}");
    }
}

/// `size <type> <sizeof> <alignof>` for each listed type, as the Rust definitions say.
macro_rules! sizes {
    ($($t:ident),* $(,)?) => {
        [$(format!("size {} {} {}", stringify!($t), size_of::<regkern::$t>(), align_of::<regkern::$t>())),*]
    };
}

/// `offset <type> <field> <offset>` for each listed field.
macro_rules! offsets {
    ($($t:ident . $f:ident),* $(,)?) => {
        [$(format!("offset {} {} {}", stringify!($t), stringify!($f), std::mem::offset_of!(regkern::$t, $f))),*]
    };
}

#[test]
fn the_c_compiler_lays_out_every_struct_as_rust_does() {
    let src = workspace().join("tests/c/abi_layout.c");
    let stdout = build_and_run(&src, &out_dir("layout")).unwrap_or_else(|e| panic!("{e}"));
    let mut rust: Vec<String> = sizes![
        rk_linear_config,
        rk_mlp_config,
        rk_stack_config,
        rk_transformer_config,
        rk_encdec_config,
        rk_model_config_u,
        rk_model_config,
        rk_optimizer,
        rk_schedule,
        rk_mode,
        rk_plan,
        rk_error,
        rk_dims,
        rk_step_info,
        rk_tensor_info,
        rk_status,
    ]
    .into_iter()
    .chain(offsets![
        rk_mlp_config.latent_dims,
        rk_mlp_config.n_out,
        rk_mlp_config.act,
        rk_stack_config.moe,
        rk_stack_config.num_experts,
        rk_stack_config.capacity_factor,
        rk_stack_config.alpha,
        rk_transformer_config.num_layers,
        rk_transformer_config.autoregressive,
        rk_encdec_config.num_encoder_layers,
        rk_encdec_config.num_decoder_layers,
        rk_model_config.u,
        rk_mode.lean_memory,
        rk_optimizer.nesterov,
        rk_optimizer.weight_decay,
        rk_optimizer.alpha,
        rk_optimizer.centered,
        rk_schedule.steps_per_epoch,
        rk_schedule.total_steps,
        rk_schedule.clip_grad_norm,
        rk_mode.max_batch,
        rk_mode.optimizer,
        rk_mode.seq_len,
        rk_plan.total_bytes,
        rk_error.needed,
        rk_error.got,
        rk_error.field,
        rk_error.message,
        rk_dims.param_floats,
        rk_dims.training,
        rk_step_info.steps,
        rk_step_info.moe_aux,
        rk_step_info.moe_dropped,
        rk_tensor_info.rank,
        rk_tensor_info.shape,
        rk_tensor_info.offset,
        rk_tensor_info.len,
    ])
    .collect();
    let mut c: Vec<String> = stdout.lines().map(str::to_owned).collect();
    rust.sort();
    c.sort();
    let only_c: Vec<_> = c.iter().filter(|l| !rust.contains(l)).collect();
    let only_rust: Vec<_> = rust.iter().filter(|l| !c.contains(l)).collect();
    assert!(
        only_c.is_empty() && only_rust.is_empty(),
        "layouts differ (or a type/field is listed on one side only):\n  C:    {only_c:?}\n  Rust: {only_rust:?}"
    );
}

#[test]
fn the_pkg_config_file_has_the_crate_version() {
    let pc = std::fs::read_to_string(workspace().join("ffi/regkern.pc.in")).expect("ffi/regkern.pc.in");
    let version = pc.lines().find_map(|l| l.strip_prefix("Version:")).map(str::trim);
    assert_eq!(version, Some(env!("CARGO_PKG_VERSION")), "ffi/regkern.pc.in's Version");
}

// ---------------------------------------------------------------------------------------------
// The C training run of tests/c/train_mlp.c, replayed through the Rust API. Every constant and
// formula below mirrors that file.

const SEED: u64 = 42;
const DATA_SEED: u32 = 12345;
const N_IN: usize = 8;
const SAMPLES: usize = 256;
const BATCH: usize = 32;
const STEPS_PER_EPOCH: usize = SAMPLES / BATCH;
const PHASE1_STEPS: u64 = 240;
const PHASE2_STEPS: u64 = 80;
const TOTAL_STEPS: u64 = PHASE1_STEPS + PHASE2_STEPS;
const LR: f32 = 0.01;
const MIN_LR: f32 = 1e-4;
const CLIP: f32 = 0.1;

/// tests/c/rk_test.h's LCG: state = 1664525 · state + 1013904223 (mod 2^32); a uniform value in
/// [-1, 1) is the state's top 24 bits · 2^-23 − 1 (exact in f32).
struct Lcg(u32);

impl Lcg {
    fn uniform(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (self.0 >> 8) as f32 * (1.0 / 8_388_608.0) - 1.0
    }
}

/// train_mlp.c's data set: x row by row from the LCG, y from the same left-to-right formula.
fn data() -> (Vec<f32>, Vec<f32>) {
    let mut g = Lcg(DATA_SEED);
    let xs: Vec<f32> = (0..SAMPLES * N_IN).map(|_| g.uniform()).collect();
    let ys = xs
        .chunks_exact(N_IN)
        .map(|x| x[0] * x[1] + 0.5 * (x[2] * x[2]) - 0.5 * x[3] + 0.25 * (x[4] - x[5] * x[6]) + 0.1 * x[7])
        .collect();
    (xs, ys)
}

/// The (loss, lr) of every step, then the final mean loss over the data set, through the Rust
/// API: phase 1 with `Trainer::train_step` (the optimizer's constant rate), phase 2 as
/// `rk_train_step` does it under a schedule (`Schedule::lr` at the global step, `Net::set_batch`,
/// `Trainer::step`), with clipping set through `Trainer::set_config`.
fn rust_run() -> (Vec<(f32, f32)>, f32) {
    let cfg = ModelConfig::Mlp(MlpConfig {
        n_in: N_IN,
        latent_dims: [32, 16].into_iter().collect(),
        n_out: 1,
        act: Activation::Tanh,
    });
    let optimizer = Optimizer::adam(LR);
    let model = Model::plan(&cfg, Mode::Training { max_batch: BATCH, optimizer }).unwrap();
    let mut arena = vec![0.0f32; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).unwrap();
    net.init_params(SEED);
    let constant = TrainConfig { epochs: 1, schedule: Schedule::Constant, clip_grad_norm: None };
    let mut trainer = Trainer::new(net, optimizer, constant).unwrap();

    let (xs, ys) = data();
    let batch = |step: u64| {
        let b = step as usize % STEPS_PER_EPOCH;
        (&xs[b * BATCH * N_IN..][..BATCH * N_IN], &ys[b * BATCH..][..BATCH])
    };
    let mut curve = Vec::new();
    for step in 0..PHASE1_STEPS {
        let (x, y) = batch(step);
        let info = trainer.train_step(x, y).unwrap();
        curve.push((info.loss, info.lr));
    }
    let schedule = Schedule::Cosine { min_lr: MIN_LR };
    trainer.set_config(TrainConfig { epochs: 1, schedule, clip_grad_norm: Some(CLIP) }).unwrap();
    for step in PHASE1_STEPS..TOTAL_STEPS {
        let (x, y) = batch(step);
        let n = trainer.net().set_batch(x, y).unwrap();
        let at = Progress { step, epoch: (step / STEPS_PER_EPOCH as u64) as usize, total_steps: TOTAL_STEPS };
        let lr = schedule.lr(trainer.optimizer().lr(), at);
        let info = trainer.step(n, lr).unwrap();
        curve.push((info.loss, info.lr));
    }
    let mut eval = 0.0f32;
    for b in 0..STEPS_PER_EPOCH as u64 {
        let (x, y) = batch(b);
        eval += trainer.net().eval_loss(x, y).unwrap() / STEPS_PER_EPOCH as f32;
    }
    (curve, eval)
}

fn hex(s: &str) -> f32 {
    f32::from_bits(u32::from_str_radix(s, 16).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}")))
}

#[test]
fn the_c_training_curve_equals_the_rust_apis_bit_for_bit() {
    let src = workspace().join("tests/c/train_mlp.c");
    let stdout = build_and_run(&src, &out_dir("curve")).unwrap_or_else(|e| panic!("{e}"));
    let mut c_curve = Vec::new();
    let mut c_eval = None;
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["loss", loss, "lr", lr] => c_curve.push((hex(loss), hex(lr))),
            ["eval", e] => c_eval = Some(hex(e)),
            _ => {}
        }
    }
    let (rust_curve, rust_eval) = rust_run();
    assert_eq!(c_curve.len(), rust_curve.len(), "steps printed by train_mlp.c");
    for (step, (c, r)) in c_curve.iter().zip(&rust_curve).enumerate() {
        assert!(
            c.0.to_bits() == r.0.to_bits() && c.1.to_bits() == r.1.to_bits(),
            "step {step}: C loss {:e} ({:08x}) lr {:e} ({:08x}), Rust loss {:e} ({:08x}) lr {:e} ({:08x})",
            c.0,
            c.0.to_bits(),
            c.1,
            c.1.to_bits(),
            r.0,
            r.0.to_bits(),
            r.1,
            r.1.to_bits()
        );
    }
    let c_eval = c_eval.expect("train_mlp.c prints `eval <bits>`");
    assert_eq!(c_eval.to_bits(), rust_eval.to_bits(), "final mean loss: C {c_eval:e}, Rust {rust_eval:e}");
}
