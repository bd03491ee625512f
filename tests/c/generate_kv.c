/*
 * Greedy generation through the C ABI. An autoregressive GQA transformer planned with an f32 KV
 * cache (and, for comparison, the same model with an f16 cache) generates after a prompt:
 * - with the cache (use_cache 1) and without (0), expanding context: agree within 1e-5 (f16
 *   cache: within 1e-3); the first value equals rk_predict's last position on the prompt;
 *   rk_generate leaves the model's sequence length as it was;
 * - sliding window W: cached and uncached agree within 1e-5; while the context fits in W the
 *   values equal the expanding context's, after that they differ, and every value equals
 *   rk_predict's last position over the last W values (the window's definition);
 * - an expanding context past max_seq_len is RK_E_CONTEXT_TOO_LONG (err.needed / err.got =
 *   positions needed / max_seq_len); exactly max_seq_len positions is fine.
 * And an encoder-decoder decodes greedily with rk_predict: finite, and the same (within 1e-5)
 * with the decoder's KV cache as without.
 */
#include "rk_test.h"

#define BATCH 2
#define MAX_SEQ 16
#define PROMPT 4
#define WINDOW 6
#define SLIDE_STEPS 20
#define SEED 11u
#define D (16 / 4)  /* head dim E / H */
#define KV_DIM (2 * D) /* G · D */

T_POOL(pool, 1 << 21);

static float prompt[BATCH * PROMPT];

/* rk_generate, checked to succeed. */
static void generate(rk_model *m, float *out, size_t steps, size_t window, int use_cache) {
    rk_error err;
    CHECK_OK(rk_generate(m, prompt, BATCH * PROMPT, PROMPT, out, BATCH * steps, steps, window, (uint8_t)use_cache, &err),
             &err);
    CHECK(t_all_finite(out, BATCH * steps), "non-finite generated value (steps %zu, window %zu, cache %d)", steps,
          window, use_cache);
}

/* rk_predict's value at the last of `len` positions of each sequence in `ctx` (BATCH × len). */
static void predict_last(rk_model *m, const float *ctx, size_t len, float *last) {
    static float x[BATCH * MAX_SEQ], y[BATCH * MAX_SEQ];
    rk_error err;
    memcpy(x, ctx, BATCH * len * sizeof(float));
    CHECK_OK(rk_set_seq_len(m, len, NULL), NULL);
    CHECK_OK(rk_predict(m, x, BATCH * len, y, BATCH * len, &err), &err);
    for (int b = 0; b < BATCH; b++) last[b] = y[b * len + len - 1];
}

static void autoregressive(void) {
    rk_model_config cfg = t_small_transformer(1, RK_KV_F32);
    rk_mode mode = t_inference(BATCH);
    rk_plan plan;
    rk_model *m = t_model(&pool, &cfg, &mode, &plan);
    CHECK(plan.kv_cache == 2 * 2 * BATCH * MAX_SEQ * KV_DIM * sizeof(float),
          "f32 KV cache of 2 layers × %d sequences × %d positions × %d: %" PRIu64 " bytes", BATCH, MAX_SEQ, KV_DIM,
          plan.kv_cache);
    CHECK_OK(rk_init_params(m, SEED, NULL), NULL);

    t_lcg g = {99u};
    t_lcg_fill(&g, prompt, BATCH * PROMPT);

    /* Expanding context: cache or not. */
    enum { STEPS = 8 };
    static float cached[BATCH * STEPS], uncached[BATCH * STEPS], last[BATCH];
    generate(m, cached, STEPS, 0, 1);
    generate(m, uncached, STEPS, 0, 0);
    float diff = t_max_abs_diff(cached, uncached, BATCH * STEPS);
    CHECK(diff <= 1e-5f, "cached and uncached generation differ by %g", (double)diff);
    rk_dims dims;
    CHECK_OK(rk_model_dims(m, &dims, NULL), NULL);
    CHECK(dims.seq_len == MAX_SEQ, "rk_generate changed the sequence length to %" PRIu64, dims.seq_len);
    predict_last(m, prompt, PROMPT, last);
    for (int b = 0; b < BATCH; b++)
        CHECK(fabsf(last[b] - uncached[b * STEPS]) <= 1e-6f, "sequence %d: first generated %.9g, predicted %.9g", b,
              (double)uncached[b * STEPS], (double)last[b]);

    /* Exactly max_seq_len positions: fine; one more: context too long. */
    enum { LONGEST = MAX_SEQ - PROMPT + 1 };
    static float longest[BATCH * (LONGEST + 1)];
    generate(m, longest, LONGEST, 0, 1);
    rk_error err;
    rk_status s = rk_generate(m, prompt, BATCH * PROMPT, PROMPT, longest, BATCH * (LONGEST + 1), LONGEST + 1, 0, 1, &err);
    CHECK(s == RK_E_CONTEXT_TOO_LONG && err.code == s, "%d steps after %d: status %d (%s)", LONGEST + 1, PROMPT, (int)s,
          rk_status_str(s));
    CHECK(err.needed == MAX_SEQ + 1 && err.got == MAX_SEQ && err.message[0] != '\0',
          "context too long: needed %" PRIu64 ", got %" PRIu64 ", message \"%s\"", err.needed, err.got, err.message);
    s = rk_generate(m, prompt, BATCH * PROMPT, PROMPT, longest, BATCH * (LONGEST + 1), LONGEST + 1, 0, 0, NULL);
    CHECK(s == RK_E_CONTEXT_TOO_LONG, "without the cache too: status %d", (int)s);

    /* Sliding window: longer than max_seq_len is fine. */
    static float slide_c[BATCH * SLIDE_STEPS], slide_u[BATCH * SLIDE_STEPS];
    generate(m, slide_c, SLIDE_STEPS, WINDOW, 1);
    generate(m, slide_u, SLIDE_STEPS, WINDOW, 0);
    diff = t_max_abs_diff(slide_c, slide_u, BATCH * SLIDE_STEPS);
    CHECK(diff <= 1e-5f, "sliding window: cached and uncached differ by %g", (double)diff);
    int differs = 0;
    for (int b = 0; b < BATCH; b++)
        for (int i = 0; i < STEPS; i++) {
            float a = slide_u[b * SLIDE_STEPS + i], e = uncached[b * STEPS + i];
            if (PROMPT + i <= WINDOW) /* the context still fits in the window */
                CHECK(t_bits(a) == t_bits(e), "sequence %d step %d: window %.9g, expanding %.9g", b, i, (double)a, (double)e);
            else
                differs |= t_bits(a) != t_bits(e);
        }
    CHECK(differs, "a window of %d gives the expanding context's values after it fills", WINDOW);
    /* Each value is the prediction at the last position of the last WINDOW values. */
    for (int i = WINDOW - PROMPT + 1; i < SLIDE_STEPS; i++) {
        static float ctx[BATCH * WINDOW];
        for (int b = 0; b < BATCH; b++)
            for (int j = 0; j < WINDOW; j++) {
                int at = PROMPT + i - WINDOW + j; /* index in prompt ++ generated */
                ctx[b * WINDOW + j] = at < PROMPT ? prompt[b * PROMPT + at] : slide_u[b * SLIDE_STEPS + at - PROMPT];
            }
        predict_last(m, ctx, WINDOW, last);
        for (int b = 0; b < BATCH; b++)
            CHECK(fabsf(last[b] - slide_u[b * SLIDE_STEPS + i]) <= 1e-6f,
                  "sequence %d step %d: generated %.9g, prediction over the window %.9g", b, i,
                  (double)slide_u[b * SLIDE_STEPS + i], (double)last[b]);
    }

    /* An f16 cache: half the bytes, same parameters (same seed), close values. */
    rk_model_config cfg16 = t_small_transformer(1, RK_KV_F16);
    rk_plan plan16;
    rk_model *m16 = t_model(&pool, &cfg16, &mode, &plan16);
    CHECK(plan16.kv_cache * 2 == plan.kv_cache, "f16 cache %" PRIu64 " bytes, f32 %" PRIu64, plan16.kv_cache,
          plan.kv_cache);
    CHECK_OK(rk_init_params(m16, SEED, NULL), NULL);
    static float half[BATCH * STEPS];
    generate(m16, half, STEPS, 0, 1);
    diff = t_max_abs_diff(half, uncached, BATCH * STEPS);
    CHECK(diff <= 1e-3f, "f16-cached generation is %g from uncached", (double)diff);
    printf("generate_kv: expanding, cache vs none: ok; window %d over %d steps: ok; f16 cache within %g\n", WINDOW,
           SLIDE_STEPS, (double)diff);
    rk_model_deinit(m16);
    rk_model_deinit(m);
}

static void encoder_decoder(void) {
    enum { SRC = 6, TGT = 5 };
    rk_model_config cfg = rk_model_config_default(RK_MODEL_ENCODER_DECODER);
    rk_stack_config *s = &cfg.u.encdec.stack;
    t_small_stack(s, 8);
    cfg.u.encdec.num_encoder_layers = 1;
    cfg.u.encdec.num_decoder_layers = 1;
    rk_mode mode = t_inference(BATCH);
    rk_model *plain = t_model(&pool, &cfg, &mode, NULL);
    s->kv_cache = RK_KV_F32;
    rk_model *cached = t_model(&pool, &cfg, &mode, NULL);

    static float x[BATCH * SRC], y_plain[BATCH * TGT], y_cached[BATCH * TGT];
    t_lcg g = {7u};
    t_lcg_fill(&g, x, BATCH * SRC);
    rk_model *models[2] = {plain, cached};
    float *outs[2] = {y_plain, y_cached};
    for (int i = 0; i < 2; i++) {
        rk_error err;
        rk_dims dims;
        CHECK_OK(rk_init_params(models[i], SEED, NULL), NULL);
        CHECK_OK(rk_set_seq_len(models[i], SRC, NULL), NULL);
        CHECK_OK(rk_set_target_len(models[i], TGT, NULL), NULL);
        CHECK_OK(rk_model_dims(models[i], &dims, NULL), NULL);
        CHECK(dims.in_len == SRC && dims.out_len == TGT && dims.seq_len == SRC && dims.target_len == TGT,
              "encoder-decoder dims: in_len %" PRIu64 " out_len %" PRIu64, dims.in_len, dims.out_len);
        CHECK_OK(rk_predict(models[i], x, BATCH * SRC, outs[i], BATCH * TGT, &err), &err);
        CHECK(t_all_finite(outs[i], BATCH * TGT), "non-finite greedy decode");
    }
    float diff = t_max_abs_diff(y_plain, y_cached, BATCH * TGT);
    CHECK(diff <= 1e-5f, "greedy decoding with and without the KV cache differs by %g", (double)diff);
    printf("generate_kv: encoder-decoder greedy decode %g %g ...: ok\n", (double)y_cached[0], (double)y_cached[1]);
    rk_model_deinit(cached);
    rk_model_deinit(plain);
}

int main(void) {
    t_quiet_stdio();
    autoregressive();
    encoder_decoder();
    t_pool_check(&pool);
    return 0;
}
