//! `regkern bench`: the standard workloads (`shared/bench/WORKLOADS.md`) timed on this machine,
//! beside its measured peaks and, given one, a PyTorch baseline measured on the same machine.
//!
//! Each workload runs warm-up steps, then at least `--steps` timed ones (one step = one training
//! step, one gemm, or one cached decoding step); the median and the min–max are reported. The
//! training workloads' matmul FLOPs per step divided by the median give the rate at which the step
//! does its matmul work, quoted as a share of the gemm peak (K1 at 256 with the best kernel on
//! one thread, measured first) and of the FMA peak (independent multiply-add chains on one core,
//! measured first); with `--threads N` the shares can pass 100%.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use regkern_benches::{TrainSetup, first_batch, gemm_flops, random_floats, workloads};
use regkern_core::layers::KvDtype;
use regkern_core::ops::gemm::{Gemm, best_kernel, fma_probe};
use regkern_core::{Dataset, Mode, Model, ModelConfig, Net, Synthetic, Task};
use serde_json::json;

/// Arguments of `regkern bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Workloads to run, comma-separated (K1, P1, P2, P3, P4, P5, P6) [default: all].
    #[arg(long, value_delimiter = ',')]
    workload: Vec<String>,
    /// Timed steps per workload (WORKLOADS.md asks for at least 50).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    steps: u64,
    /// Untimed warm-up steps per workload.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    warmup: u64,
    /// A baseline to compare with: the JSON `benches/pytorch/bench_torch.py baseline` writes.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Print one JSON object (machine, peaks, one entry per workload) instead of a table.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Every workload id, in the order they run.
const ALL: [&str; 9] = ["K1/64", "K1/256", "K1/1024", "P1", "P2", "P3", "P4", "P5", "P6"];

/// Steps after which a training workload's trainer is rebuilt (untimed): on one fixed batch,
/// Adam's moments decay into subnormal floats within a few hundred steps and slow every step
/// (benches/benches/train_step.rs, `STEPS_PER_RUN`).
const STEPS_PER_RUN: u64 = 200;

/// Context of P4's cached step: the new position attends over 128 keys.
const P4_CONTEXT: usize = 128;

/// One workload's timings, in seconds per step.
struct Timing {
    id: &'static str,
    times: Vec<f64>,
    /// Matmul FLOPs per step (K1: the product's; P3: the mean over the timed steps, which
    /// follows the routing; P4: none quoted).
    flops: Option<u64>,
    /// P3's routing over the timed steps.
    routed: Option<Routed>,
}

/// What P3's routing did over the timed steps.
struct Routed {
    /// The fraction of (token, expert) assignments the experts kept.
    kept: f64,
    /// Each timed step's matmul FLOPs.
    step_flops: Vec<f64>,
}

/// The median of a non-empty list.
fn median(v: &[f64]) -> f64 {
    let mut t = v.to_vec();
    t.sort_by(f64::total_cmp);
    let n = t.len();
    if n % 2 == 1 { t[n / 2] } else { 0.5 * (t[n / 2 - 1] + t[n / 2]) }
}

impl Timing {
    fn median(&self) -> f64 {
        median(&self.times)
    }
    fn min(&self) -> f64 {
        self.times.iter().copied().fold(f64::INFINITY, f64::min)
    }
    fn max(&self) -> f64 {
        self.times.iter().copied().fold(0.0, f64::max)
    }
    /// Matmul GFLOP/s: the FLOPs per step over the median time; where the FLOPs vary from step
    /// to step (P3), the median of each step's FLOPs over its time.
    fn gflops(&self) -> Option<f64> {
        if let Some(r) = &self.routed {
            let rates: Vec<f64> = r.step_flops.iter().zip(&self.times).map(|(f, t)| f / t / 1e9).collect();
            return Some(median(&rates));
        }
        self.flops.map(|f| f as f64 / self.median() / 1e9)
    }
}

/// The machine: CPU model, kernel path, the two peaks.
struct Machine {
    cpu: String,
    kernel: &'static str,
    fma_peak: Option<f64>,
    gemm_peak: f64,
}

/// Run `regkern bench`.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    let selected = select(&args.workload)?;
    let baseline = args.baseline.as_deref().map(read_baseline).transpose()?;
    let steps = args.warmup + args.steps;
    let total = selected.len() as u64 * steps + 2;
    let bar = crate::progress_bar(total, args.quiet, "{bar:30} {pos}/{len} steps  {elapsed_precise}  {msg}");
    bar.set_message("FMA and gemm peaks");
    let machine = Machine {
        cpu: cpu_model(),
        kernel: best_kernel().name(),
        fma_peak: fma_peak(),
        gemm_peak: gemm_peak(),
    };
    bar.inc(2);
    let mut results = Vec::new();
    for id in selected {
        bar.set_message(id);
        let mut tick = |_: u64| bar.inc(1);
        let timing = match id {
            "K1/64" => time_gemm(id, 64, false, args.warmup, args.steps, &mut tick),
            "K1/256" => time_gemm(id, 256, false, args.warmup, args.steps, &mut tick),
            "K1/1024" => time_gemm(id, 1024, false, args.warmup, args.steps, &mut tick),
            "P4" => time_decode(args.warmup, args.steps, &mut tick)?,
            _ => time_train(id, args.warmup, args.steps, &mut tick)?,
        };
        results.push(timing);
    }
    bar.finish_and_clear();
    if args.json {
        outln!("{}", to_json(&machine, args, &results, baseline.as_ref()));
    } else {
        print_table(&machine, args, &results, baseline.as_ref());
    }
    Ok(())
}

/// The workloads `--workload` names, expanded (`K1` is its three sizes), in run order.
fn select(names: &[String]) -> Result<Vec<&'static str>, String> {
    if names.is_empty() {
        return Ok(ALL.to_vec());
    }
    let mut want = Vec::new();
    for name in names {
        let name = name.trim().to_ascii_uppercase();
        let ids: Vec<&'static str> = ALL
            .iter()
            .copied()
            .filter(|id| *id == name || id.split('/').next() == Some(name.as_str()))
            .collect();
        if ids.is_empty() {
            return Err(format!("--workload {name}: not a workload (K1, K1/64, K1/256, K1/1024, P1 ... P6)"));
        }
        want.extend(ids);
    }
    Ok(ALL.iter().copied().filter(|id| want.contains(id)).collect())
}

/// The CPU's model name (Linux: /proc/cpuinfo), or the architecture.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// GFLOP/s of independent FMA chains with the widest vector unit: the best of five ~0.1 s runs.
fn fma_peak() -> Option<f64> {
    let kernel = best_kernel();
    fma_probe(kernel, 1000, 0.5)?; // warm up the vector unit
    let mut best: f64 = 0.0;
    for _ in 0..5 {
        let start = Instant::now();
        let (flops, check) = fma_probe(kernel, 4_000_000, black_box(0.999_999))?;
        black_box(check);
        best = best.max(flops as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    Some(best)
}

/// GFLOP/s of K1 at 256 with the best kernel on one thread (whatever `--threads` says): the
/// best of three medians of 100 products, after 50 warm-up ones (a shared machine's hiccup
/// should not lower the peak every share is quoted against).
fn gemm_peak() -> f64 {
    (0..3)
        .map(|round| {
            let warmup = if round == 0 { 50 } else { 0 };
            time_gemm("K1/256", 256, true, warmup, 100, &mut |_| {}).gflops().unwrap_or(0.0)
        })
        .fold(0.0, f64::max)
}

/// K1: `C = A·B`, n×n, with the gemm regkern's layers use (and any installed threads, unless
/// `serial`).
fn time_gemm(
    id: &'static str,
    n: usize,
    serial: bool,
    warmup: u64,
    steps: u64,
    tick: &mut dyn FnMut(u64),
) -> Timing {
    let (a, b) = (random_floats(n * n, 1), random_floats(n * n, 2));
    let mut c = vec![0.0f32; n * n];
    let g = Gemm::nn(n, n, n);
    let gemm = if serial { regkern_core::ops::gemm::gemm_serial } else { regkern_core::ops::gemm };
    let mut run = || gemm(black_box(&mut c), black_box(&a), black_box(&b), g);
    let times = measure(warmup, steps, &mut run, tick);
    Timing { id, times, flops: Some(gemm_flops(n, n, n)), routed: None }
}

/// Time `warmup + steps` calls of `step`, keeping the last `steps`.
fn measure(warmup: u64, steps: u64, step: &mut dyn FnMut(), tick: &mut dyn FnMut(u64)) -> Vec<f64> {
    let mut times = Vec::with_capacity(steps as usize);
    for i in 0..warmup + steps {
        let start = Instant::now();
        step();
        let t = start.elapsed().as_secs_f64();
        if i >= warmup {
            times.push(t);
        }
        tick(1);
    }
    times
}

/// Matmul FLOPs of a training workload's step.
#[derive(Clone, Copy)]
enum StepFlops {
    /// The same every step.
    Fixed(u64),
    /// P3's: the experts run only the assignments they keep, so the FLOPs are counted from each
    /// step's routing ([`workloads::p3_matmul_flops`]).
    Routed,
}

/// A training workload: its config, batch, data and matmul FLOPs per step.
fn train_workload(id: &str) -> Result<(ModelConfig, usize, Box<dyn Dataset>, StepFlops), String> {
    let seqsum = |batch| Box::new(Synthetic::new(Task::Seqsum, 0, 0, batch)) as Box<dyn Dataset>;
    Ok(match id {
        "P1" => (
            workloads::p1_mlp(),
            workloads::P1_BATCH,
            Box::new(Synthetic::new(Task::Nlinear, 0, 0, workloads::P1_BATCH)),
            StepFlops::Fixed(workloads::p1_matmul_flops()),
        ),
        "P2" => (
            workloads::p2_transformer(),
            workloads::P2_BATCH,
            seqsum(workloads::P2_BATCH),
            StepFlops::Fixed(workloads::P2_MATMUL_FLOPS),
        ),
        "P3" => {
            (workloads::p3_transformer(), workloads::P2_BATCH, seqsum(workloads::P2_BATCH), StepFlops::Routed)
        }
        "P5" => (
            workloads::p5_encdec(),
            workloads::P2_BATCH,
            Box::new(Synthetic::new(Task::Reverse, 0, 0, workloads::P2_BATCH)),
            StepFlops::Fixed(workloads::P5_MATMUL_FLOPS),
        ),
        "P6" => (
            workloads::p6_transformer(),
            workloads::P6_BATCH,
            Box::new(
                Synthetic::new(Task::Seqsum, 0, 0, workloads::P6_BATCH)
                    .with_seq_len(workloads::P6_SEQ)
                    .map_err(|e| format!("P6: {e}"))?,
            ),
            StepFlops::Fixed(workloads::P6_MATMUL_FLOPS),
        ),
        _ => return Err(format!("{id}: not a training workload")),
    })
}

/// A training workload: Adam steps on one fixed batch, the trainer rebuilt (untimed) every
/// [`STEPS_PER_RUN`] steps.
fn time_train(
    id: &'static str,
    warmup: u64,
    steps: u64,
    tick: &mut dyn FnMut(u64),
) -> Result<Timing, String> {
    let (cfg, batch, data, flops) = train_workload(id)?;
    let (x, y) = first_batch(data.as_ref(), batch);
    let mut setup = TrainSetup::new(&cfg, batch, workloads::optimizer()).map_err(|e| format!("{id}: {e}"))?;
    let mut times = Vec::with_capacity(steps as usize);
    let (mut done, mut kept, mut assigned, mut step_flops) = (0, 0u64, 0u64, Vec::<f64>::new());
    while done < warmup + steps {
        let mut trainer = setup.trainer(0).map_err(|e| format!("{id}: {e}"))?;
        for _ in 0..STEPS_PER_RUN.min(warmup + steps - done) {
            let start = Instant::now();
            let info = trainer.train_step(black_box(&x), black_box(&y)).map_err(|e| format!("{id}: {e}"))?;
            let t = start.elapsed().as_secs_f64();
            black_box(info.loss);
            if done >= warmup {
                times.push(t);
                if let Some(m) = info.moe {
                    let k = m.assignments - m.dropped;
                    (kept, assigned) = (kept + k as u64, assigned + m.assignments as u64);
                    step_flops.push(workloads::p3_matmul_flops(k as f64));
                }
            }
            done += 1;
            tick(1);
        }
    }
    let (flops, routed) = match flops {
        StepFlops::Fixed(f) => (f, None),
        StepFlops::Routed if assigned == 0 => return Err(format!("{id}: the steps reported no routing")),
        StepFlops::Routed => {
            let mean = step_flops.iter().sum::<f64>() / step_flops.len() as f64;
            (mean.round() as u64, Some(Routed { kept: kept as f64 / assigned as f64, step_flops }))
        }
    };
    Ok(Timing { id, times, flops: Some(flops), routed })
}

/// P4: one KV-cached decoding step whose new position attends over [`P4_CONTEXT`] keys.
fn time_decode(warmup: u64, steps: u64, tick: &mut dyn FnMut(u64)) -> Result<Timing, String> {
    let cfg = workloads::p4_transformer(Some(KvDtype::F32));
    let model = Model::plan(&cfg, Mode::Inference { max_batch: 1 }).map_err(|e| format!("P4: {e}"))?;
    let mut arena = vec![0.0f32; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).map_err(|e| format!("P4: {e}"))?;
    net.init_params(0);
    let values: Vec<f32> = (0..P4_CONTEXT).map(|t| (0.3 * t as f32).sin()).collect();
    let mut dec = net.decoder(1).map_err(|e| format!("P4: {e}"))?;
    let mut out = [0.0f32];
    for v in &values[..P4_CONTEXT - 1] {
        dec.push(std::slice::from_ref(v), &mut out).map_err(|e| format!("P4: {e}"))?;
    }
    let mut failed = None;
    let mut step = || {
        let r = dec
            .truncate(P4_CONTEXT - 1)
            .and_then(|()| dec.push(black_box(&values[P4_CONTEXT - 1..]), &mut out));
        if let Err(e) = r {
            failed.get_or_insert(e);
        }
    };
    let times = measure(warmup, steps, &mut step, tick);
    match failed {
        Some(e) => Err(format!("P4: {e}")),
        None => Ok(Timing { id: "P4", times, flops: None, routed: None }),
    }
}

/// The baseline file: workload id → median ms, with where it came from.
struct Baseline {
    source: String,
    medians: serde_json::Map<String, serde_json::Value>,
}

impl Baseline {
    /// P3: the share of routed assignments the baseline's experts kept, when it says.
    fn kept_fraction(&self, id: &str) -> Option<f64> {
        self.medians.get(id)?.get("kept_fraction")?.as_f64().filter(|v| (0.0..=1.0).contains(v))
    }

    fn median_ms(&self, id: &str) -> Option<f64> {
        self.medians.get(id)?.get("median_ms")?.as_f64().filter(|v| v.is_finite() && *v > 0.0)
    }
}

fn read_baseline(path: &std::path::Path) -> Result<Baseline, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--baseline {}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("--baseline {}: not JSON: {e}", path.display()))?;
    let medians = v.get("workloads").and_then(|w| w.as_object()).cloned().ok_or_else(|| {
        format!("--baseline {}: no \"workloads\" object (bench_torch.py baseline writes one)", path.display())
    })?;
    let field = |k: &str| v.get(k).map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string));
    let source = format!(
        "{} {} ({} thread(s)) on {}",
        field("source").unwrap_or_else(|| "baseline".into()),
        field("torch").unwrap_or_default(),
        field("threads").unwrap_or_else(|| "?".into()),
        field("cpu").unwrap_or_else(|| "an unnamed CPU".into())
    );
    Ok(Baseline { source, medians })
}

fn print_table(m: &Machine, args: &BenchArgs, results: &[Timing], base: Option<&Baseline>) {
    outln!("CPU: {}; kernel: {}; threads: {}", m.cpu, m.kernel, crate::threads());
    let fma = m.fma_peak.map_or_else(|| "n/a".to_string(), |p| format!("{p:.1} GFLOP/s"));
    outln!(
        "FMA peak: {fma}; gemm peak (K1 at 256): {:.1} GFLOP/s{}",
        m.gemm_peak,
        m.fma_peak.map_or(String::new(), |p| format!(" ({:.0}% of FMA peak)", 100.0 * m.gemm_peak / p))
    );
    if let Some(b) = base {
        outln!("baseline: {}", b.source);
    }
    outln!("{} timed steps per workload after {} warm-up steps; times per step\n", args.steps, args.warmup);
    let mut header = format!(
        "{:<8} {:>11} {:>23} {:>13} {:>9} {:>9}",
        "workload", "median", "min–max", "matmul GF/s", "% gemm", "% FMA"
    );
    if base.is_some() {
        header += &format!(" {:>11} {:>8}", "baseline", "speedup");
    }
    outln!("{header}");
    for t in results {
        let gf = t.gflops();
        let pct = |peak: Option<f64>| match (gf, peak) {
            (Some(g), Some(p)) if p > 0.0 => format!("{:.0}%", 100.0 * g / p),
            _ => "–".into(),
        };
        let mut line = format!(
            "{:<8} {:>11} {:>23} {:>13} {:>9} {:>9}",
            t.id,
            duration(t.median()),
            format!("{} – {}", duration(t.min()), duration(t.max())),
            gf.map_or_else(|| "–".into(), |g| format!("{g:.1}")),
            pct(Some(m.gemm_peak)),
            pct(m.fma_peak)
        );
        if let Some(b) = base {
            match b.median_ms(t.id) {
                Some(ms) => line += &format!(" {:>11} {:>7.2}×", duration(ms / 1e3), ms / 1e3 / t.median()),
                None => line += &format!(" {:>11} {:>8}", "–", "–"),
            }
        }
        outln!("{line}");
    }
    for t in results {
        if let (Some(Routed { kept: k, .. }), Some(f)) = (&t.routed, t.flops) {
            outln!(
                "\n{}: the experts kept {:.1}% of the routed assignments over the timed steps, so a step's \
                 matmul work was {:.3} GFLOP on average (it follows the routing: {:.3} with nothing kept, \
                 {:.3} with everything).",
                t.id,
                100.0 * k,
                f as f64 / 1e9,
                workloads::p3_matmul_flops(0.0) / 1e9,
                workloads::p3_matmul_flops(workloads::P3_ASSIGNMENTS as f64) / 1e9
            );
            if let Some(bk) = base.and_then(|b| b.kept_fraction(t.id)) {
                outln!(
                    "The baseline's experts kept {:.1}% ({:.3} GFLOP/step): its routing evolves differently.",
                    100.0 * bk,
                    workloads::p3_matmul_flops(workloads::P3_ASSIGNMENTS as f64 * bk) / 1e9
                );
            }
        }
    }
}

/// Seconds as µs or ms with three significant digits.
fn duration(s: f64) -> String {
    if s < 1e-3 { format!("{:.2} µs", s * 1e6) } else { format!("{:.3} ms", s * 1e3) }
}

fn to_json(m: &Machine, args: &BenchArgs, results: &[Timing], base: Option<&Baseline>) -> serde_json::Value {
    let workloads: serde_json::Map<String, serde_json::Value> = results
        .iter()
        .map(|t| {
            let gf = t.gflops();
            let mut o = json!({
                "median_ms": t.median() * 1e3,
                "min_ms": t.min() * 1e3,
                "max_ms": t.max() * 1e3,
                "steps": t.times.len(),
                "matmul_flops_per_step": t.flops,
                "matmul_gflops": gf,
                "pct_gemm_peak": gf.map(|g| 100.0 * g / m.gemm_peak),
                "pct_fma_peak": gf.zip(m.fma_peak).map(|(g, p)| 100.0 * g / p),
            });
            if let Some(r) = &t.routed {
                o["kept_fraction"] = json!(r.kept);
            }
            if let Some(ms) = base.and_then(|b| b.median_ms(t.id)) {
                o["baseline_median_ms"] = json!(ms);
                o["speedup"] = json!(ms / (t.median() * 1e3));
            }
            (t.id.to_string(), o)
        })
        .collect();
    json!({
        "cpu": m.cpu,
        "kernel": m.kernel,
        "threads": crate::threads(),
        "fma_peak_gflops": m.fma_peak,
        "gemm_peak_gflops": m.gemm_peak,
        "warmup": args.warmup,
        "baseline": base.map(|b| b.source.clone()),
        "workloads": workloads,
    })
}
