//! Mixture-of-Experts cost: does an MoE layer cost what its k·N routed rows cost, not E·N?
//!
//! - `moe/layer/8-experts-top2/1024`: forward + backward of one MoE FFN (E 64, F 128 per expert,
//!   8 experts, top-2, capacity factor 1.25) over 1024 tokens — the P3 layer shape.
//! - `moe/layer/dense/2048`: forward + backward of one dense FFN of the same expert size over
//!   2048 tokens: the same k·N = 2048 rows of expert work, without routing.
//!
//! The ratio of the two medians is the routing overhead (issue 5 asks for ≤ 1.5×).

use std::hint::black_box;

use criterion::Criterion;
use regkern_benches::random_floats;
use regkern_core::Kernels;
use regkern_core::layers::moe::{self, Capacity, ExpertLayout, Moe};
use regkern_core::layers::{Activation, Ffn, ffn};

const C: usize = 64;
const F: usize = 128;
const TOKENS: usize = 1024;

fn layer() -> Moe {
    Moe {
        n_embd: C,
        n_hidden: F,
        n_experts: 8,
        top_k: 2,
        capacity: Capacity::Factor(1.25),
        alpha: 0.01,
        act: Activation::Gelu,
        kernels: Kernels::Auto,
    }
}

fn bench_moe(c: &mut Criterion) {
    let d = layer();
    let layout = ExpertLayout { parts: [0, F * C, F * C + F, 2 * F * C + F], stride: 2 * F * C + F + C };
    let (x, router, experts) =
        (random_floats(TOKENS * C, 1), random_floats(8 * C, 2), random_floats(8 * layout.stride, 3));
    let dout = random_floats(TOKENS * C, 4);
    let mut bufs: Vec<Vec<f32>> = moe::buffer_lens(&d, TOKENS, true).iter().map(|&l| vec![0.0; l]).collect();
    let mut grads: Vec<Vec<f32>> = moe::grad_buffer_lens(&d, TOKENS).iter().map(|&l| vec![0.0; l]).collect();
    let (mut out, mut dx, mut dr, mut de) =
        (vec![0.0; TOKENS * C], vec![0.0; TOKENS * C], vec![0.0; 8 * C], vec![0.0; experts.len()]);
    c.bench_function("moe/layer/8-experts-top2/1024", |bench| {
        bench.iter(|| {
            let b: [&mut [f32]; 12] =
                bufs.iter_mut().map(|v| &mut v[..]).collect::<Vec<_>>().try_into().expect("12 buffers");
            let mut b = moe::Buffers::from_slices(b);
            let stats = moe::forward(&mut out, &mut b, black_box(&x), &router, (&experts, layout), d, TOKENS);
            let g: [&mut [f32]; 5] =
                grads.iter_mut().map(|v| &mut v[..]).collect::<Vec<_>>().try_into().expect("5 buffers");
            moe::backward(
                &mut dx,
                (&mut dr, &mut de),
                moe::GradBuffers::from_slices(g),
                &dout,
                &b.saved(),
                &x,
                (&router, &experts, layout),
                d,
                TOKENS,
            );
            black_box(stats)
        })
    });
}

fn bench_dense(c: &mut Criterion) {
    let d = Ffn { n_embd: C, n_hidden: F, act: Activation::Gelu, kernels: Kernels::Auto };
    let n = 2 * TOKENS;
    let (x, dout) = (random_floats(n * C, 5), random_floats(n * C, 6));
    let w: Vec<Vec<f32>> =
        [F * C, F, C * F, C].iter().enumerate().map(|(i, &l)| random_floats(l, 7 + i as u64)).collect();
    let mut dw: Vec<Vec<f32>> = w.iter().map(|v| vec![0.0; v.len()]).collect();
    let (mut out, mut pre, mut hid, mut dx) =
        (vec![0.0; n * C], vec![0.0; n * F], vec![0.0; n * F], vec![0.0; n * C]);
    let mut dhid = vec![0.0; n * F];
    c.bench_function("moe/layer/dense/2048", |bench| {
        bench.iter(|| {
            let weights = [&w[0][..], &w[1], &w[2], &w[3]];
            ffn::forward(&mut out, &mut pre, Some(&mut hid), black_box(&x), weights, d);
            let [a, b, cc, e] = &mut dw[..] else { unreachable!("four tensors") };
            ffn::backward(&mut dx, [a, b, cc, e], &mut dhid, &dout, [&x, &pre, &hid], weights, d);
        })
    });
}

criterion::criterion_group!(benches, bench_moe, bench_dense);
criterion::criterion_main!(benches);
