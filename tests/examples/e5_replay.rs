//! E5 (encoder-decoder on `reverse`) trained by regkern from PyTorch's exact starting point.
//!
//! ```sh
//! python benches/pytorch/bench_torch.py e5 --seed 3 --epochs 40 --export /tmp/e5-seed3.safetensors
//! cargo run --release -p regkern-tests --example e5_replay -- /tmp/e5-seed3.safetensors
//! ```
//!
//! The file holds PyTorch's initial weights (`param.<state_dict name>`), its data (`x_train`,
//! `y_train`, `x_val`, `y_val`) and the sample order of each epoch (`perms`). regkern loads them
//! into the default encoder-decoder (the CLI's E5 model), takes the same Adam steps (lr 1e-3) over
//! the same batches of 32 and prints each epoch's teacher-forced validation MSE, then one JSON line
//! with the curve and `plateau_end_epoch` (the first epoch below half of epoch 1's validation MSE,
//! as `bench_torch.py e5` reports it). Put beside PyTorch's own curve for that seed, it shows whether
//! the two implementations follow the same training dynamics, not only the same single steps.

use regkern_core::{
    Dataset, EncoderDecoderConfig, Mode, Model, ModelConfig, Net, Optimizer, Schedule, SliceDataset,
    TrainConfig, Trainer,
};

const SEQ: usize = 32;
const BATCH: usize = 32;

fn tensor(st: &safetensors::SafeTensors<'_>, name: &str) -> Result<Vec<f32>, String> {
    let t = st.tensor(name).map_err(|e| format!("{name}: {e}"))?;
    if t.dtype() != safetensors::Dtype::F32 {
        return Err(format!("{name}: expected F32, found {:?}", t.dtype()));
    }
    Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

fn run(path: &str) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let cfg = ModelConfig::EncoderDecoder(EncoderDecoderConfig::default());
    let optimizer = Optimizer::adam(1e-3);
    let model =
        Model::plan(&cfg, Mode::Training { max_batch: BATCH, optimizer }).map_err(|e| e.to_string())?;
    let mut arena = vec![0.0f32; model.report().total_floats()];
    let mut net = Net::new(model, &mut arena).map_err(|e| e.to_string())?;
    net.set_seq_len(SEQ).map_err(|e| e.to_string())?;
    net.set_target_len(SEQ).map_err(|e| e.to_string())?;
    let table: Vec<_> = net.model().params().collect();
    for p in &table {
        let values = tensor(&st, &format!("param.{}", p.name.as_str()))?;
        let dst = &mut net.params_mut()[p.slot.range()];
        if values.len() != dst.len() {
            return Err(format!(
                "param.{}: {} values, the model has {}",
                p.name.as_str(),
                values.len(),
                dst.len()
            ));
        }
        dst.copy_from_slice(&values);
    }
    let (xt, yt) = (tensor(&st, "x_train")?, tensor(&st, "y_train")?);
    let (xv, yv) = (tensor(&st, "x_val")?, tensor(&st, "y_val")?);
    let train = SliceDataset::new(&xt, &yt, SEQ, SEQ).map_err(|e| format!("x_train/y_train: {e}"))?;
    let val = SliceDataset::new(&xv, &yv, SEQ, SEQ).map_err(|e| format!("x_val/y_val: {e}"))?;
    let perms: Vec<u32> = tensor(&st, "perms")?.iter().map(|&i| i as u32).collect();
    let epochs = perms.len() / train.len();
    if epochs == 0 || perms.len() != epochs * train.len() {
        return Err(format!("perms: {} indices for {} training samples", perms.len(), train.len()));
    }

    let config = TrainConfig { epochs, schedule: Schedule::Constant, clip_grad_norm: None };
    let mut trainer = Trainer::new(net, optimizer, config).map_err(|e| e.to_string())?;
    let mut curve = Vec::with_capacity(epochs);
    for (epoch, order) in perms.chunks_exact(train.len()).enumerate() {
        for idx in order.chunks(BATCH) {
            let (x, y) = trainer.net().batch_mut(idx.len()).map_err(|e| e.to_string())?;
            train.fill(idx, x, y);
            trainer.step(idx.len(), optimizer.lr()).map_err(|e| e.to_string())?;
        }
        let loss = trainer.evaluate(&val).map_err(|e| e.to_string())?;
        eprintln!("epoch {:2}  val {loss:.4e}", epoch + 1);
        curve.push(f64::from(loss));
    }
    let plateau_end = curve.iter().position(|&v| v < 0.5 * curve[0]).map(|i| i + 1);
    let json = serde_json::json!({ "file": path, "val_mse": curve, "plateau_end_epoch": plateau_end });
    println!("{json}");
    Ok(())
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: e5_replay FILE  (written by bench_torch.py e5 --seed S --epochs N --export FILE)");
        std::process::exit(2);
    };
    if let Err(e) = run(&path) {
        eprintln!("e5_replay: {e}");
        std::process::exit(1);
    }
}
