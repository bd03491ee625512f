/*
 * Inference with a GQA transformer through the C ABI: plan (inference mode: no gradients, no
 * optimizer state), init on an arena of exactly plan.total_bytes, rk_init_params, rk_set_seq_len,
 * rk_predict on a batch. Checks:
 * - the plan of an inference model has no training regions; the parameters start at zero on a
 *   garbage-filled arena; rk_model_dims reports the config and the current sequence length;
 * - the parameter table (rk_param_info) starts with input_proj.weight [E, input_dim], ends with
 *   head.bias, has increasing, non-overlapping offsets, and its lengths sum to
 *   rk_dims.param_floats (which equals the count computed from the config here);
 * - outputs are finite and deterministic (bit for bit), and predicting each sample alone gives the
 *   batch's numbers within 1e-6; rk_init_params with the same seed reproduces the parameters.
 */
#include "rk_test.h"

#define E 16
#define F 32
#define H 4
#define G 2
#define LAYERS 2
#define MAX_SEQ 16
#define IN_DIM 2
#define SEQ 8
#define BATCH 4
#define SEED 7u

T_POOL(pool, 1 << 20);

/* Parameter floats of the config above, from SPEC §3.3-3.5: input_proj, pos_embed, per block
 * norm1, q/k/v/o projections (k, v: [G*D, E]), norm2, fc1, fc2; final_norm, head. */
static uint64_t expected_param_floats(void) {
    const uint64_t d = E / H, kv = G * d;
    uint64_t block = 2 * E                      /* norm1 */
                     + (E * E + E) * 2          /* q_proj, o_proj */
                     + (kv * E + kv) * 2        /* k_proj, v_proj */
                     + 2 * E                    /* norm2 */
                     + (F * E + F) + (E * F + E); /* ffn.fc1, ffn.fc2 */
    return (E * IN_DIM + E) + MAX_SEQ * E + LAYERS * block + 2 * E + (1 * E + 1);
}

int main(void) {
    t_quiet_stdio();
    rk_model_config cfg = t_small_transformer(0, RK_KV_NONE);
    cfg.u.transformer.stack.input_dim = IN_DIM;
    rk_mode mode = t_inference(BATCH);
    rk_plan plan;
    rk_model *m = t_model(&pool, &cfg, &mode, &plan);
    CHECK(plan.grads == 0 && plan.opt_state == 0 && plan.act_grads == 0 && plan.kv_cache == 0,
          "an inference plan without cache has no grads (%" PRIu64 "), optimizer state (%" PRIu64
          "), activation grads (%" PRIu64 ") or KV cache (%" PRIu64 ")",
          plan.grads, plan.opt_state, plan.act_grads, plan.kv_cache);
    CHECK(plan.params + plan.acts + plan.scratch + plan.handle == plan.total_bytes,
          "the regions add up to total_bytes %" PRIu64, plan.total_bytes);

    /* The parameters start at zero, whatever the arena held. */
    float *params = NULL;
    size_t n_params = 0;
    CHECK_OK(rk_params(m, &params, &n_params, NULL), NULL);
    for (size_t i = 0; i < n_params; i++) CHECK(params[i] == 0.0f, "parameter %zu is %g before init", i, (double)params[i]);

    CHECK_OK(rk_init_params(m, SEED, NULL), NULL);
    CHECK_OK(rk_set_seq_len(m, SEQ, NULL), NULL);

    /* Dims. */
    rk_dims dims;
    CHECK_OK(rk_model_dims(m, &dims, NULL), NULL);
    CHECK(dims.in_len == SEQ * IN_DIM && dims.out_len == 1 && dims.in_dim == IN_DIM && dims.out_dim == 1,
          "in_len %" PRIu64 " out_len %" PRIu64 " in_dim %" PRIu64 " out_dim %" PRIu64, dims.in_len,
          dims.out_len, dims.in_dim, dims.out_dim);
    CHECK(dims.seq_len == SEQ && dims.target_len == SEQ && dims.max_seq_len == MAX_SEQ,
          "seq_len %" PRIu64 " target_len %" PRIu64 " max_seq_len %" PRIu64, dims.seq_len, dims.target_len,
          dims.max_seq_len);
    CHECK(dims.max_batch == BATCH && dims.training == 0, "max_batch %" PRIu64 " training %d", dims.max_batch,
          dims.training);
    CHECK(dims.param_tensors == 3 + LAYERS * 16 + 4, "param_tensors %" PRIu64, dims.param_tensors);
    CHECK(dims.param_floats == expected_param_floats(), "param_floats %" PRIu64 ", expected %" PRIu64,
          dims.param_floats, expected_param_floats());
    CHECK(n_params >= dims.param_floats && (uint64_t)n_params * 4 <= plan.params,
          "rk_params gives %zu floats for %" PRIu64 " parameters in %" PRIu64 " bytes", n_params,
          dims.param_floats, plan.params);

    /* The parameter table. */
    uint64_t sum = 0, end = 0;
    rk_tensor_info info;
    for (uint64_t i = 0; i < dims.param_tensors; i++) {
        CHECK_OK(rk_param_info(m, (size_t)i, &info, NULL), NULL);
        CHECK(info.name[0] != '\0' && memchr(info.name, '\0', sizeof info.name) != NULL, "tensor %" PRIu64 " has no name", i);
        uint64_t shape_len = info.rank == 2 ? info.shape[0] * info.shape[1] : info.shape[0];
        CHECK((info.rank == 1 || info.rank == 2) && shape_len == info.len && (info.rank == 2 || info.shape[1] == 0),
              "%s: rank %u shape [%" PRIu64 ", %" PRIu64 "] len %" PRIu64, info.name, info.rank, info.shape[0],
              info.shape[1], info.len);
        CHECK(info.offset >= end, "%s starts at %" PRIu64 ", inside the previous tensor (ends at %" PRIu64 ")",
              info.name, info.offset, end);
        end = info.offset + info.len;
        sum += info.len;
        if (i == 0)
            CHECK(strcmp(info.name, "input_proj.weight") == 0 && info.rank == 2 && info.shape[0] == E &&
                      info.shape[1] == IN_DIM,
                  "tensor 0 is %s [%" PRIu64 ", %" PRIu64 "]", info.name, info.shape[0], info.shape[1]);
        if (i == 2) CHECK(strcmp(info.name, "pos_embed.weight") == 0, "tensor 2 is %s", info.name);
        if (i == 3) CHECK(strcmp(info.name, "layers.0.norm1.weight") == 0, "tensor 3 is %s", info.name);
    }
    CHECK(strcmp(info.name, "head.bias") == 0 && info.len == 1, "the last tensor is %s", info.name);
    CHECK(end <= n_params, "the table ends at %" PRIu64 ", past the %zu floats of rk_params", end, n_params);
    CHECK(sum == dims.param_floats, "tensor lengths sum to %" PRIu64 ", param_floats is %" PRIu64, sum,
          dims.param_floats);

    /* Predict a batch, then each sample alone. */
    static float x[BATCH * SEQ * IN_DIM], out[BATCH], again[BATCH], one[1];
    t_lcg g = {2024u};
    t_lcg_fill(&g, x, sizeof x / sizeof x[0]);
    rk_error err;
    CHECK_OK(rk_predict(m, x, sizeof x / sizeof x[0], out, BATCH, &err), &err);
    CHECK(t_all_finite(out, BATCH), "non-finite prediction");
    CHECK(out[0] != out[1], "two different samples gave the same prediction %g", (double)out[0]);
    CHECK_OK(rk_predict(m, x, sizeof x / sizeof x[0], again, BATCH, &err), &err);
    CHECK(t_first_diff(out, again, BATCH) == BATCH, "predicting twice differs");
    for (int b = 0; b < BATCH; b++) {
        CHECK_OK(rk_predict(m, &x[b * SEQ * IN_DIM], SEQ * IN_DIM, one, 1, &err), &err);
        /* Not bitwise: the kernels may block and sum a batch's rows differently from one sample's
         * (differences seen: ~3e-8). */
        CHECK(fabsf(one[0] - out[b]) <= 1e-6f, "sample %d alone: %.9g, in the batch: %.9g", b, (double)one[0],
              (double)out[b]);
    }

    /* A smaller batch and another sequence length. */
    CHECK_OK(rk_predict(m, x, 2 * SEQ * IN_DIM, again, 2, &err), &err);
    CHECK(t_max_abs_diff(out, again, 2) <= 1e-6f, "a batch of 2 differs from the first 2 of a batch of 4");
    CHECK_OK(rk_set_seq_len(m, MAX_SEQ, NULL), NULL);
    CHECK_OK(rk_model_dims(m, &dims, NULL), NULL);
    CHECK(dims.in_len == MAX_SEQ * IN_DIM, "in_len %" PRIu64 " at seq_len %d", dims.in_len, MAX_SEQ);
    CHECK_OK(rk_predict(m, x, 2 * MAX_SEQ * IN_DIM, again, 2, &err), &err);
    CHECK(t_all_finite(again, 2), "non-finite prediction at max_seq_len");

    /* The same seed gives the same parameters; another seed, others. */
    static float saved[8192];
    CHECK(n_params <= sizeof saved / sizeof saved[0], "too many parameters for the test's buffer");
    memcpy(saved, params, n_params * sizeof(float));
    CHECK_OK(rk_init_params(m, SEED + 1, NULL), NULL);
    CHECK(t_first_diff(saved, params, n_params) < n_params, "another seed gave the same parameters");
    CHECK_OK(rk_init_params(m, SEED, NULL), NULL);
    CHECK(t_first_diff(saved, params, n_params) == n_params, "the same seed gave other parameters");

    printf("predict_transformer: %" PRIu64 " tensors, %" PRIu64 " floats, arena %" PRIu64 " bytes, outputs %g %g %g %g: ok\n",
           dims.param_tensors, dims.param_floats, plan.total_bytes, (double)out[0], (double)out[1], (double)out[2],
           (double)out[3]);
    rk_model_deinit(m);
    t_pool_check(&pool);
    return 0;
}
