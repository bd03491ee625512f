//! Checkpoints against the reference implementation of safetensors (the Rust crate that
//! Python's `safetensors` wraps) and against files PyTorch users write; resuming training
//! from a checkpoint is exact.

use regkern_core::checkpoint::Header;
use regkern_core::{
    DataLoader, Dataset, EncoderDecoderConfig, Mode, Model, ModelConfig, Net, Optimizer, Schedule, Synthetic,
    Task, TrainConfig, Trainer, TransformerConfig,
};
use regkern_tests::{Fixture, mlp};

fn net_of<'a>(cfg: &ModelConfig, arena: &'a mut Vec<f32>) -> Net<'a> {
    let model = Model::plan(cfg, Mode::Inference { max_batch: 2 }).unwrap();
    arena.resize(model.report().total_floats(), 0.0);
    Net::new(model, arena).unwrap()
}

/// What regkern writes, the reference reader reads: every parameter under its PyTorch name and
/// shape, as f32 with the same values, and the metadata.
#[test]
fn the_reference_implementation_reads_our_checkpoints() {
    let configs = [
        mlp(8, &[16, 8], 1, regkern_core::Activation::Gelu),
        ModelConfig::Transformer(TransformerConfig { max_seq_len: 8, ..Default::default() }),
        ModelConfig::EncoderDecoder(EncoderDecoderConfig { max_seq_len: 8, ..Default::default() }),
    ];
    for cfg in configs {
        let mut arena = Vec::new();
        let mut net = net_of(&cfg, &mut arena);
        net.init_params(11);
        let mut bytes = vec![0u8; net.checkpoint_len().unwrap()];
        net.save_checkpoint(&mut bytes).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("the reference reader accepts it");
        assert_eq!(st.len(), net.model().param_count());
        for p in net.model().params() {
            let t = st.tensor(p.name.as_str()).unwrap();
            assert_eq!(t.dtype(), safetensors::Dtype::F32);
            assert_eq!(t.shape(), p.shape(), "{}", p.name.as_str());
            let values: Vec<f32> =
                t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            assert_eq!(values, &net.params()[p.slot.range()]);
        }
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        assert_eq!(meta["format"], "pt");
        let kind = match cfg {
            ModelConfig::Mlp(_) => "nlinear",
            ModelConfig::EncoderDecoder(_) => "encoder_decoder",
            _ => "transformer",
        };
        assert_eq!(meta["regkern.type"], kind);
        assert_eq!(Header::parse(&bytes).unwrap().config().unwrap(), cfg);
    }
}

/// `safetensors.torch.save_file(model.state_dict())` of the PyTorch modules behind two fixtures
/// (tensors in the writer's own order) loads, and the model then computes PyTorch's outputs.
#[test]
fn checkpoints_written_by_pytorch_load() {
    for name in ["mlp_relu", "transformer_gqa"] {
        let fx = Fixture::load(name);
        let cfg = fx.model_config();
        let model = Model::plan(&cfg, Mode::Inference { max_batch: fx.batch() }).unwrap();
        let mut arena = vec![0.0; model.report().total_floats()];
        let mut net = Net::new(model, &mut arena).unwrap();
        net.set_seq_len(fx.seq_len()).unwrap();
        let path = format!("{}/fixtures/{name}_state_dict.safetensors", env!("CARGO_MANIFEST_DIR"));
        net.load_checkpoint(&std::fs::read(&path).unwrap()).unwrap();
        for p in net.model().params() {
            assert_eq!(&net.params()[p.slot.range()], fx.get(&format!("param.{}", p.name.as_str())));
        }
        let mut out = vec![0.0; fx.get("out").len()];
        net.predict(fx.get("x"), &mut out).unwrap();
        let (err, _, _) = regkern_tests::rel_errors(&out, fx.get("out"));
        assert!(err < 1e-5, "{name}: outputs differ from PyTorch's by {err:e}");
    }
}

/// Train 6 epochs straight, or 3, save, then resume in a fresh trainer and train 3 more: the
/// losses and the final parameters are bit-identical.
#[test]
fn resuming_from_a_training_checkpoint_is_exact() {
    let cfg = ModelConfig::Transformer(TransformerConfig {
        embed_dim: 16,
        ffn_dim: 24,
        num_heads: 4,
        num_groups: 2,
        max_seq_len: 32,
        ..Default::default()
    });
    let optimizer = Optimizer::adam(3e-3);
    let (train, val) = Synthetic::split(Task::Seqsum, 4, 96, 32);
    let config =
        TrainConfig { epochs: 6, schedule: Schedule::Cosine { min_lr: 1e-4 }, clip_grad_norm: Some(1.0) };
    let run = |stop_after: Option<usize>, resume_from: Option<&[u8]>| {
        let model = Model::plan(&cfg, Mode::Training { max_batch: 16, optimizer }).unwrap();
        let mut arena = vec![0.0; model.report().total_floats()];
        let mut net = Net::new(model, &mut arena).unwrap();
        net.set_seq_len(32).unwrap();
        net.init_params(1);
        let epochs = stop_after.unwrap_or(config.epochs);
        // The schedule spans the whole run even when this part stops early.
        let mut trainer = Trainer::new(net, optimizer, config).unwrap();
        if let Some(bytes) = resume_from {
            trainer.load_checkpoint(bytes).unwrap();
        }
        let mut order = vec![0u32; train.len()];
        let mut loader = DataLoader::new(&mut order, 16, true, 4).unwrap();
        let mut losses = Vec::new();
        let mut obs = Stop { after: epochs, losses: &mut losses };
        trainer.fit(&train, Some(&val), &mut loader, &mut obs).unwrap();
        let mut bytes = vec![0u8; trainer.checkpoint_len().unwrap()];
        let n = trainer.save_checkpoint(&mut bytes).unwrap();
        bytes.truncate(n);
        (losses, trainer.net().params().to_vec(), bytes)
    };
    let (straight, params, _) = run(None, None);
    let (first, _, bytes) = run(Some(3), None);
    assert_eq!(Header::parse(&bytes).unwrap().progress().unwrap().epochs, 3);
    let (second, resumed, _) = run(None, Some(&bytes));
    assert_eq!([first, second].concat(), straight, "per-epoch (train, val) losses");
    assert_eq!(resumed, params);
}

/// Records each epoch's losses and stops after `after` epochs.
struct Stop<'a> {
    after: usize,
    losses: &'a mut Vec<(f32, f32)>,
}

impl regkern_core::Observer for Stop<'_> {
    fn on_epoch(&mut self, e: &regkern_core::EpochInfo, _: &mut Trainer<'_>) -> std::ops::ControlFlow<()> {
        self.losses.push((e.train_loss, e.val_loss.unwrap()));
        if e.epoch + 1 >= self.after {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    }
}
