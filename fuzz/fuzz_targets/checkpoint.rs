//! The checkpoint loader on arbitrary bytes, as `predict` and `--resume` use it: parse the
//! header, read the config from its metadata, plan it (inference and training), and — when the
//! plan is small enough to allocate, the cap that makes this safe — build the model and load the
//! file into it. Every step may refuse; none may panic, hang or allocate what the file claims
//! before the plan is checked. A load that fails must leave the parameters as they were.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regkern_core::checkpoint::{self, Header};
use regkern_core::{Mode, Model, Net, Optimizer, Schedule, TrainConfig, Trainer};

/// Floats of the largest arena built (1 MiB): the cap a user's `--max_memory` plays in the CLI.
const MAX_FLOATS: usize = 1 << 18;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = Header::parse(data) else { return };
    let _ =
        (header.progress(), header.optimizer_name(), header.metadata("regkern.type"), header.tensor_at(8));
    let Ok(cfg) = header.config() else { return };
    for mode in
        [Mode::Inference { max_batch: 1 }, Mode::Training { max_batch: 1, optimizer: Optimizer::adam(1e-3) }]
    {
        let Ok(model) = Model::plan(&cfg, mode) else { continue };
        // What `predict` does first: verify the file against the plan, before any allocation.
        let optimizer = match mode {
            Mode::Training { optimizer, .. } => Some(optimizer),
            Mode::Inference { .. } => None,
        };
        let verified = checkpoint::verify(data, &model, optimizer.as_ref()).is_ok();
        let floats = model.report().total_floats();
        if floats > MAX_FLOATS {
            continue;
        }
        let mut arena = vec![0.0f32; floats];
        let Ok(mut net) = Net::new(model, &mut arena) else { continue };
        net.init_params(1);
        let before = net.params().to_vec();
        match optimizer {
            None => {
                let loaded = net.load_checkpoint(data);
                assert_eq!(loaded.is_ok(), verified, "verify and load disagree");
                if loaded.is_err() {
                    assert!(same(net.params(), &before), "a failed load changed the parameters");
                } else {
                    let x = vec![0.5f32; net.in_len()];
                    let mut out = vec![0.0f32; net.out_len()];
                    let _ = net.predict(&x, &mut out);
                }
            }
            Some(optimizer) => {
                let config = TrainConfig { epochs: 1, schedule: Schedule::Constant, clip_grad_norm: None };
                let Ok(mut trainer) = Trainer::new(net, optimizer, config) else { continue };
                let steps = trainer.steps();
                if trainer.load_checkpoint(data).is_err() {
                    assert!(same(trainer.net().params(), &before), "a failed load changed the parameters");
                    assert_eq!(trainer.steps(), steps, "a failed load changed the step count");
                }
            }
        }
    }
});

/// Bit for bit (parameters may hold infinities or NaN after a diverging step).
fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}
