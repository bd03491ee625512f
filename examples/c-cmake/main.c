/* Plan an MLP, build it in a static arena, train it on y = x0 * x1 and predict: regkern from C
 * with no heap. Build: see CMakeLists.txt. */
#include <stdio.h>

#include "regkern.h"

static _Alignas(64) uint8_t arena[64 * 1024]; /* the model's whole memory */

int main(void) {
    /* The config: an MLP 2 -> 16 -> 1 with tanh; training with Adam, batches of up to 4. */
    rk_model_config cfg = rk_model_config_default(RK_MODEL_MLP);
    cfg.u.mlp.n_in = 2;
    cfg.u.mlp.n_hidden = 1;
    cfg.u.mlp.latent_dims[0] = 16;
    cfg.u.mlp.act = RK_ACT_TANH;
    rk_mode mode = {.training = 1, .max_batch = 4, .optimizer = rk_optimizer_default(RK_OPT_ADAM, 0.02f)};

    /* Plan (bytes from the config alone), then build the model in the arena. */
    rk_error err;
    rk_plan plan;
    rk_model *model = NULL;
    if (rk_model_plan(&cfg, &mode, &plan, &err) != RK_OK) goto fail;
    printf("regkern %u.%u.%u: the model needs %llu bytes (%llu of parameters)\n", rk_version() >> 16,
           (rk_version() >> 8) & 0xff, rk_version() & 0xff, (unsigned long long)plan.total_bytes,
           (unsigned long long)plan.params);
    if (rk_model_init(&cfg, &mode, arena, sizeof arena, &model, &err) != RK_OK) goto fail;
    if (rk_init_params(model, 42, NULL) != RK_OK) return 1;

    /* Train on one batch of four samples. */
    const float x[4 * 2] = {-1.0f, -1.0f, -1.0f, 1.0f, 1.0f, -1.0f, 1.0f, 1.0f};
    const float y[4] = {1.0f, -1.0f, -1.0f, 1.0f};
    rk_step_info info;
    for (int step = 0; step < 200; step++) {
        if (rk_train_step(model, x, 8, y, 4, &info, &err) != RK_OK) goto fail;
        if (step % 50 == 0) printf("step %3d  loss %.6f\n", step, info.loss);
    }

    float out[4];
    if (rk_predict(model, x, 8, out, 4, &err) != RK_OK) goto fail;
    for (int i = 0; i < 4; i++) printf("x = (%+.0f, %+.0f)  y = %+.3f  predicted %+.3f\n", x[2 * i], x[2 * i + 1], y[i], out[i]);
    rk_model_deinit(model);
    return info.loss < 0.01f ? 0 : 1;

fail:
    fprintf(stderr, "regkern: %s: %s\n", rk_status_str(err.code), err.message);
    return 1;
}
