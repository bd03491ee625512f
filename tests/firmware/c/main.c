/*
 * Firmware (e): the C ABI on a Cortex-M4F, through include/regkern.h only. An MLP 8 -> 16 -> 8
 * -> 1 (relu) is planned, built in a static arena, initialised, trained with Adam for STEPS
 * steps on one fixed batch and asked for predictions; every loss, the predictions and a
 * checksum of the parameters are printed as the hex of their bits.
 *
 * The same file runs on the host (platform_host.c, linked with the host's libregkern.a) and CI
 * diffs the two outputs: both run on the portable gemm kernel (rk_set_kernels), so they must
 * agree in every bit. Build with -ffp-contract=off so neither compiler fuses the data's
 * arithmetic into FMAs.
 */
#include <stdint.h>

#include "line.h"
#include "platform.h"
#include "regkern.h"

#define N_IN 8
#define BATCH 16
#define STEPS 30
/* rk_model_plan's total_bytes, rounded up to 1 KiB: the handle at the arena's head holds
 * pointers, so 64-bit hosts need more (the run fails if the plan outgrows the arena). */
#if UINTPTR_MAX == 0xffffffffu
#define ARENA_BYTES 15360
#else
#define ARENA_BYTES 17408
#endif

static _Alignas(64) uint8_t arena[ARENA_BYTES];
static float x[BATCH * N_IN], y[BATCH];

/* Inputs in [-1, 1) from a 32-bit LCG (exact: 24-bit integers scaled by a power of two), and
 * y = x0 * x1 + 0.5 * x2 - x3 * x3 + 0.25 * x4. */
static void make_batch(void) {
    uint32_t s = 12345;
    for (int i = 0; i < BATCH * N_IN; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) * (1.0f / 8388608.0f) - 1.0f;
    }
    for (int b = 0; b < BATCH; b++) {
        const float *r = &x[b * N_IN];
        y[b] = r[0] * r[1] + 0.5f * r[2] - r[3] * r[3] + 0.25f * r[4];
    }
}

static void print_status(const char *what, rk_status st) {
    line l;
    line_start(&l, "fail core");
    line_int(&l, st);
    line_word(&l, what);
    platform_line(l.buf);
}

static uint32_t fnv1a(const float *v, size_t n) {
    uint32_t h = 0x811c9dc5u;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &v[i], sizeof bits);
        for (int k = 0; k < 4; k++) h = (h ^ ((bits >> (8 * k)) & 0xff)) * 0x01000193u;
    }
    return h;
}

int main(void) {
    line l;
    rk_model_config cfg = rk_model_config_default(RK_MODEL_MLP);
    cfg.u.mlp.n_in = N_IN;
    cfg.u.mlp.n_hidden = 2;
    cfg.u.mlp.latent_dims[0] = 16;
    cfg.u.mlp.latent_dims[1] = 8;
    cfg.u.mlp.n_out = 1;
    cfg.u.mlp.act = RK_ACT_RELU;
    rk_mode mode = {0};
    mode.training = 1;
    mode.max_batch = BATCH;
    mode.optimizer = rk_optimizer_default(RK_OPT_ADAM, 1e-2f);

    rk_plan plan;
    rk_status st = rk_model_plan(&cfg, &mode, &plan, NULL);
    if (st != RK_OK) return print_status("plan", st), 1;
    const struct { const char *name; uint64_t bytes; } regions[] = {
        {"params", plan.params}, {"grads", plan.grads}, {"opt_state", plan.opt_state},
        {"acts", plan.acts}, {"act_grads", plan.act_grads}, {"scratch", plan.scratch},
        {"kv_cache", plan.kv_cache},
    };
    for (unsigned i = 0; i < sizeof regions / sizeof regions[0]; i++) {
        line_start(&l, "arena c");
        line_word(&l, regions[i].name);
        line_dec(&l, regions[i].bytes);
        platform_line(l.buf);
    }
    /* The handle's size and so the total depend on the pointer width: measurements, not results. */
    line_start(&l, "arena c handle");
    line_dec(&l, plan.handle);
    line_word(&l, "total");
    line_dec(&l, plan.total_bytes);
    line_word(&l, "static");
    line_dec(&l, ARENA_BYTES);
    platform_note(l.buf);

    rk_model *m = NULL;
    if ((st = rk_model_init(&cfg, &mode, arena, sizeof arena, &m, NULL)) != RK_OK) return print_status("init", st), 1;
    if ((st = rk_set_kernels(m, RK_KERNELS_PORTABLE, NULL)) != RK_OK) return print_status("kernels", st), 1;
    if ((st = rk_init_params(m, 13, NULL)) != RK_OK) return print_status("init_params", st), 1;

    make_batch();
    float first = 0.0f, last = 0.0f;
    for (int step = 0; step < STEPS; step++) {
        rk_step_info info;
        if ((st = rk_train_step(m, x, BATCH * N_IN, y, BATCH, &info, NULL)) != RK_OK) return print_status("train", st), 1;
        line_start(&l, "loss");
        line_dec(&l, (uint64_t)step);
        line_f32(&l, info.loss);
        platform_line(l.buf);
        if (step == 0) first = info.loss;
        last = info.loss;
    }

    float out[BATCH];
    if ((st = rk_predict(m, x, BATCH * N_IN, out, BATCH, NULL)) != RK_OK) return print_status("predict", st), 1;
    for (int i = 0; i < 4; i++) {
        line_start(&l, "predict");
        line_dec(&l, (uint64_t)i);
        line_f32(&l, out[i]);
        line_f32(&l, y[i]);
        platform_line(l.buf);
    }
    float *params = NULL;
    size_t n_params = 0;
    if ((st = rk_params(m, &params, &n_params, NULL)) != RK_OK) return print_status("params", st), 1;
    line_start(&l, "checksum");
    line_hex(&l, fnv1a(params, n_params));
    platform_line(l.buf);
    rk_model_deinit(m);

    if (!(last <= 0.5f * first)) {
        platform_line("fail check loss_did_not_halve");
        return 1;
    }
    platform_line("ok");
    return 0;
}
