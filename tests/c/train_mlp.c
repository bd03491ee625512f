/*
 * Train an MLP through the C ABI on a deterministic synthetic regression problem and check that
 * it learns. Each step's loss and learning rate are printed as the bit patterns of the floats,
 *
 *     loss 3e9a1b2c lr 3c23d70a
 *
 * one line per step, then `eval <bits>` (the mean loss over the data set after training), so
 * that ffi/tests/c_programs.rs can replay the same run through regkern-core's Rust API and
 * compare the curves bit for bit. Any change here must be mirrored there.
 *
 * The problem: 256 samples of x ~ U[-1, 1)^8 drawn from the LCG of rk_test.h (seed DATA_SEED,
 * x row by row), y = x0*x1 + 0.5*(x2*x2) - 0.5*x3 + 0.25*(x4 - x5*x6) + 0.1*x7 evaluated left to
 * right in f32 (without FP contraction, so every operation rounds once, as in Rust).
 * Batches are the 8 consecutive blocks of 32 samples, in order, every epoch.
 *
 * The run: MLP 8 -> 32 -> 16 -> 1 (tanh), Adam lr 0.01, parameters from rk_init_params(SEED).
 * Phase 1, PHASE1_STEPS steps at the constant rate (the default schedule); phase 2,
 * PHASE2_STEPS steps under rk_set_schedule: cosine to MIN_LR over TOTAL_STEPS, gradients
 * clipped to norm CLIP.
 */
#include "rk_test.h"

/* Every f32 operation of the data rounds once, as in Rust: no fused multiply-adds. GCC does not
 * contract in ISO C mode (-std=c11); clang does unless told not to. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define SEED 42u
#define DATA_SEED 12345u
#define N_IN 8
#define SAMPLES 256
#define BATCH 32
#define STEPS_PER_EPOCH (SAMPLES / BATCH)
#define PHASE1_STEPS 240
#define PHASE2_STEPS 80
#define TOTAL_STEPS (PHASE1_STEPS + PHASE2_STEPS)
#define LR 0.01f
#define MIN_LR 1e-4f
#define CLIP 0.1f /* below some of phase 2's gradient norms, so clipping acts */
#define TARGET_LOSS 0.01f /* the last epoch's mean loss must be below this */

T_POOL(pool, 1 << 20);

static float xs[SAMPLES][N_IN];
static float ys[SAMPLES];

static float target(const float *x) {
    return x[0] * x[1] + 0.5f * (x[2] * x[2]) - 0.5f * x[3] + 0.25f * (x[4] - x[5] * x[6]) + 0.1f * x[7];
}

static void make_data(void) {
    t_lcg g = {DATA_SEED};
    for (int i = 0; i < SAMPLES; i++) {
        t_lcg_fill(&g, xs[i], N_IN);
        ys[i] = target(xs[i]);
    }
}

/* One step on batch `step % STEPS_PER_EPOCH`; prints and returns its rk_step_info. */
static rk_step_info step(rk_model *m, uint64_t step) {
    rk_step_info info;
    rk_error err;
    int b = (int)(step % STEPS_PER_EPOCH);
    CHECK_OK(rk_train_step(m, xs[b * BATCH], BATCH * N_IN, &ys[b * BATCH], BATCH, &info, &err), &err);
    CHECK(isfinite(info.loss) && isfinite(info.grad_norm), "step %" PRIu64 ": loss %g, grad norm %g",
          step, (double)info.loss, (double)info.grad_norm);
    CHECK(info.steps == step + 1, "step %" PRIu64 ": info.steps is %" PRIu64, step, info.steps);
    printf("loss %08" PRIx32 " lr %08" PRIx32 "\n", t_bits(info.loss), t_bits(info.lr));
    return info;
}

int main(void) {
    t_quiet_stdio();
    make_data();

    rk_model_config cfg = rk_model_config_default(RK_MODEL_MLP);
    cfg.u.mlp.n_in = N_IN;
    cfg.u.mlp.n_hidden = 2;
    cfg.u.mlp.latent_dims[0] = 32;
    cfg.u.mlp.latent_dims[1] = 16;
    cfg.u.mlp.n_out = 1;
    cfg.u.mlp.act = RK_ACT_TANH;
    rk_mode mode = t_training(BATCH, rk_optimizer_default(RK_OPT_ADAM, LR));
    rk_plan plan;
    rk_model *m = t_model(&pool, &cfg, &mode, &plan);
    CHECK(plan.grads == plan.params && plan.opt_state == 2 * plan.params,
          "Adam plans gradients and two moments like the parameters: params %" PRIu64 ", grads %" PRIu64
          ", opt_state %" PRIu64, plan.params, plan.grads, plan.opt_state);
    CHECK_OK(rk_init_params(m, SEED, NULL), NULL);

    /* Phase 1: the constant rate of the optimizer. */
    float first = 0.0f;
    for (uint64_t s = 0; s < PHASE1_STEPS; s++) {
        rk_step_info info = step(m, s);
        if (s == 0) first = info.loss;
        CHECK(info.lr == LR, "step %" PRIu64 ": constant lr is %g", s, (double)info.lr);
    }

    /* Phase 2: cosine annealing over the whole run (the schedule sees the global step), with
     * gradient clipping. */
    rk_schedule sched = rk_schedule_default();
    sched.kind = RK_SCHED_COSINE;
    sched.min_lr = MIN_LR;
    sched.steps_per_epoch = STEPS_PER_EPOCH;
    sched.total_steps = TOTAL_STEPS;
    sched.clip_grad_norm = CLIP;
    rk_error err;
    CHECK_OK(rk_set_schedule(m, &sched, &err), &err);
    float prev_lr = LR, last_epoch = 0.0f;
    int clipped = 0;
    for (uint64_t s = PHASE1_STEPS; s < TOTAL_STEPS; s++) {
        rk_step_info info = step(m, s);
        clipped += info.grad_norm > CLIP;
        CHECK(info.lr < prev_lr && info.lr >= MIN_LR, "step %" PRIu64 ": cosine lr %g after %g", s,
              (double)info.lr, (double)prev_lr);
        prev_lr = info.lr;
        if (s >= TOTAL_STEPS - STEPS_PER_EPOCH) last_epoch += info.loss / STEPS_PER_EPOCH;
    }
    CHECK(prev_lr == MIN_LR, "the last step's lr is %g, not min_lr", (double)prev_lr);
    CHECK(clipped > 0, "no gradient norm of phase 2 exceeded the clipping norm %g", (double)CLIP);

    /* The mean loss over the data set, without gradients. */
    float eval = 0.0f;
    for (int b = 0; b < STEPS_PER_EPOCH; b++) {
        float loss;
        CHECK_OK(rk_eval_loss(m, xs[b * BATCH], BATCH * N_IN, &ys[b * BATCH], BATCH, &loss, &err), &err);
        eval += loss / STEPS_PER_EPOCH;
    }
    printf("eval %08" PRIx32 "\n", t_bits(eval));

    CHECK(last_epoch < TARGET_LOSS, "last epoch's mean loss %g is not below %g (first step: %g)",
          (double)last_epoch, (double)TARGET_LOSS, (double)first);
    CHECK(eval < TARGET_LOSS, "mean loss over the data %g is not below %g", (double)eval, (double)TARGET_LOSS);
    printf("train_mlp: first loss %g, last epoch %g, eval %g, %d steps clipped: ok\n", (double)first,
           (double)last_epoch, (double)eval, clipped);

    rk_model_deinit(m);
    t_pool_check(&pool);
    return 0;
}
