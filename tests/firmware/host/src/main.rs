//! `fw-host <scenario>` runs a firmware scenario on the host and prints exactly the lines the
//! firmware prints (without its `#` measurement lines); the exit status is the firmware's.
//! `fw-host export-weights <dir>` trains the `mlp-train` scenario and writes its parameters as
//! `<dir>/weights.rs` and `<dir>/mlp.safetensors`, the inference firmware's weights, with the
//! rows it predicts (the first of `mlp-train`'s validation split) in `weights.rs`.
//!
//! Build it for the host explicitly (the workspace's default target is the Cortex-M4):
//! `cargo build --release -p regkern-fw-host --target x86_64-unknown-linux-gnu`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use regkern_core::{Dataset, Mode, Model, Net, Synthetic, Task};
use regkern_scenarios::{Failure, Platform, finish, mlp_infer, mlp_train, seqsum_train, sine_generate};

/// Lines to stdout.
struct Stdout(std::io::StdoutLock<'static>);

impl Platform for Stdout {
    fn line(&mut self, text: &[u8]) {
        self.0.write_all(text).and_then(|()| self.0.write_all(b"\n")).expect("stdout is writable");
    }
}

/// Lines nowhere (export-weights prints only what it wrote).
struct Quiet;

impl Platform for Quiet {
    fn line(&mut self, _: &[u8]) {}
}

const USAGE: &str = "usage: fw-host mlp-train|seqsum-train|sine-generate|mlp-infer|mlp-infer-safetensors|mlp-infer-layers\n       fw-host export-weights <dir>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = Stdout(std::io::stdout().lock());
    let p = &mut out;
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["mlp-train"] => mlp_train::run(p, &mut vec![0.0; mlp_train::ARENA_FLOATS]).map(|_| ()),
        ["seqsum-train"] => seqsum_train::run(p, &mut vec![0.0; seqsum_train::ARENA_FLOATS]),
        ["sine-generate"] => sine_generate::run(p, &mut vec![0.0; sine_generate::ARENA_FLOATS]),
        ["mlp-infer"] => mlp_infer::run_net(p, &mut vec![0.0; mlp_infer::ARENA_FLOATS]),
        ["mlp-infer-safetensors"] => mlp_infer::run_safetensors(p, &mut vec![0.0; mlp_infer::ARENA_FLOATS]),
        ["mlp-infer-layers"] => mlp_infer::run_layers(p, &mut vec![0.0; mlp_infer::LAYERS_ARENA_FLOATS]),
        ["export-weights", dir] => {
            return match export_weights(Path::new(dir)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("export-weights: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if finish(p, result) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Rows `mlp-infer` predicts.
const INFER_ROWS: usize = 8;

/// `pub static NAME: [u32; len] = [...];` of the floats' bits, 8 per line.
fn array(name: &str, values: &[f32]) -> String {
    let mut s = format!("pub static {name}: [u32; {}] = [\n", values.len());
    for row in values.chunks(8) {
        let words: Vec<String> = row.iter().map(|v| format!("0x{:08x}", v.to_bits())).collect();
        s.push_str(&format!("    {},\n", words.join(", ")));
    }
    s.push_str("];\n");
    s
}

/// Train `mlp-train` and write its final parameters, as the array and as a checkpoint of the
/// inference plan `mlp-infer` uses.
fn export_weights(dir: &Path) -> Result<(), String> {
    let mut arena = vec![0.0f32; mlp_train::ARENA_FLOATS];
    let n = mlp_train::run(&mut Quiet, &mut arena).map_err(|f: Failure| format!("training failed: {f:?}"))?;
    let params = &arena[..n];

    let rows = Synthetic::new(Task::Nlinear, mlp_train::SEED, mlp_train::TRAIN, INFER_ROWS);
    let (mut x, mut y) = (vec![0.0f32; INFER_ROWS * rows.in_len()], vec![0.0f32; INFER_ROWS]);
    for i in 0..INFER_ROWS {
        rows.get(i, &mut x[i * 8..][..8], &mut y[i..][..1]);
    }

    let mut rs = String::from(
        "//! The inference firmware's weights and rows, written by `fw-host export-weights` (see\n\
         //! tests/firmware/README.md); do not edit. Floats are stored as their bits.\n\n",
    );
    rs.push_str(&format!(
        "/// The params region of `mlp_train`'s MLP after its training run, {n} floats (slot padding\n\
         /// included); FNV-1a {:08x}, what `mlp_train` prints as `checksum`.\n",
        regkern_scenarios::fnv1a(params)
    ));
    rs.push_str(&array("MLP_PARAMS", params));
    rs.push_str(&format!(
        "\n/// Inputs of the first {INFER_ROWS} rows of `mlp_train`'s validation split of `nlinear`, 8 per row.\n"
    ));
    rs.push_str(&array("ROWS_X", &x));
    rs.push_str("\n/// Their targets.\n");
    rs.push_str(&array("ROWS_Y", &y));
    rs.push_str("\n/// `MLP_PARAMS` as a safetensors checkpoint of the inference plan.\n");
    rs.push_str("pub static MLP_SAFETENSORS: &[u8] = include_bytes!(\"mlp.safetensors\");\n");

    let model = Model::plan(&mlp_train::config(), Mode::Inference { max_batch: mlp_infer::MAX_BATCH })
        .map_err(|e| format!("{e:?}"))?;
    let mut infer_arena = vec![0.0f32; model.report().total_floats()];
    let mut net = Net::new(model, &mut infer_arena).map_err(|e| format!("{e:?}"))?;
    if net.params().len() != n {
        return Err(format!("inference plan has {} params, training {n}", net.params().len()));
    }
    net.params_mut().copy_from_slice(params);
    let mut ckpt = vec![0u8; net.checkpoint_len().map_err(|e| format!("{e:?}"))?];
    let len = net.save_checkpoint(&mut ckpt).map_err(|e| format!("{e:?}"))?;
    ckpt.truncate(len);

    for (name, bytes) in [("weights.rs", rs.as_bytes()), ("mlp.safetensors", &ckpt[..])] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}
