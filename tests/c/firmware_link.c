/*
 * What a firmware does with libregkern.a, with nothing but the library: no stdio, no heap. A tiny
 * MLP is planned, built in a static arena, initialised, trained a few SGD steps on a fixed batch
 * and asked for predictions. The exit status says whether it worked.
 *
 * CI links it for a Cortex-M4F against the thumbv7em-none-eabihf build of the library
 * (arm-none-eabi-gcc ... --specs=nosys.specs; see .ci/run) to prove the static library links
 * into bare-metal firmware; running it there is for the QEMU firmware. On the host it runs with
 * the other C programs.
 */
#include <math.h>
#include <stdint.h>

#include "regkern.h"

#define ARENA_BYTES 16384 /* the plan below needs less on 32- and 64-bit targets */

static _Alignas(64) uint8_t arena[ARENA_BYTES];

/* A batch of 4 samples of 3 features, targets y = x0 + x1 - x2. */
static const float x[4 * 3] = {0.5f, -0.5f, 0.25f, 1.0f, 0.0f, -1.0f, -0.75f, 0.5f, 0.5f, 0.1f, 0.2f, 0.3f};
static const float y[4] = {-0.25f, 2.0f, -0.75f, 0.0f};

int main(void) {
    rk_model_config cfg = rk_model_config_default(RK_MODEL_MLP);
    cfg.u.mlp.n_in = 3;
    cfg.u.mlp.n_hidden = 1;
    cfg.u.mlp.latent_dims[0] = 8;
    cfg.u.mlp.n_out = 1;
    cfg.u.mlp.act = RK_ACT_TANH;
    rk_mode mode = {0};
    mode.training = 1;
    mode.max_batch = 4;
    mode.optimizer = rk_optimizer_default(RK_OPT_SGD, 0.1f);

    rk_plan plan;
    if (rk_model_plan(&cfg, &mode, &plan, NULL) != RK_OK || plan.total_bytes > sizeof arena) return 1;
    rk_model *m = NULL;
    if (rk_model_init(&cfg, &mode, arena, sizeof arena, &m, NULL) != RK_OK) return 2;
    if (rk_init_params(m, 1, NULL) != RK_OK) return 3;

    rk_step_info first, info;
    for (int step = 0; step < 20; step++) {
        if (rk_train_step(m, x, 12, y, 4, &info, NULL) != RK_OK) return 4;
        if (step == 0) first = info;
    }
    float out[4];
    if (rk_predict(m, x, 12, out, 4, NULL) != RK_OK) return 5;
    for (int i = 0; i < 4; i++)
        if (!isfinite(out[i])) return 6;
    if (!(info.loss < first.loss)) return 7;
    rk_model_deinit(m);
    return 0;
}
