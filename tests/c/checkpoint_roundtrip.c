/*
 * Checkpoints through the C ABI, in caller buffers (safetensors bytes; no files, no heap).
 * An MLP trains a few steps under a cosine schedule, then saves its parameters
 * (training_state 0) and its full training state (1). Checks:
 * - rk_checkpoint_size bounds what rk_checkpoint_save writes;
 * - a second model (inference, fresh garbage-filled arena) loading the parameters predicts the
 *   same numbers bit for bit;
 * - a third model (training, fresh arena) loading the training state and given the same
 *   schedule takes the next steps exactly as the original does: same step count, learning rate,
 *   loss and parameters, bit for bit;
 * - rk_checkpoint_config recovers the config: the same plan (every region) for the MLP, and for
 *   a transformer with MoE and an f16 KV cache;
 * - truncated, corrupted and foreign buffers are RK_E_BAD_CHECKPOINT and leave the model
 *   unchanged (its predictions and parameters stay the same bits).
 */
#include "rk_test.h"

#define N_IN 4
#define BATCH 8
#define SEED 3u
#define STEPS_BEFORE 5

T_POOL(pool, 1 << 21);

static float xs[4][BATCH * N_IN], ys[4][BATCH];
static uint8_t params_ckpt[1 << 16], train_ckpt[1 << 16], other_ckpt[1 << 17];
static float snapshot[1 << 12];

static rk_model_config mlp_config(void) {
    rk_model_config cfg = rk_model_config_default(RK_MODEL_MLP);
    cfg.u.mlp.n_in = N_IN;
    cfg.u.mlp.n_hidden = 2;
    cfg.u.mlp.latent_dims[0] = 16;
    cfg.u.mlp.latent_dims[1] = 8;
    cfg.u.mlp.n_out = 1;
    cfg.u.mlp.act = RK_ACT_GELU;
    return cfg;
}

static rk_schedule cosine(void) {
    rk_schedule s = rk_schedule_default();
    s.kind = RK_SCHED_COSINE;
    s.min_lr = 1e-4f;
    s.steps_per_epoch = 4;
    s.total_steps = 20;
    return s;
}

static rk_step_info train(rk_model *m, int batch) {
    rk_step_info info;
    rk_error err;
    CHECK_OK(rk_train_step(m, xs[batch], BATCH * N_IN, ys[batch], BATCH, &info, &err), &err);
    return info;
}

static void predict(rk_model *m, float *out) {
    rk_error err;
    CHECK_OK(rk_predict(m, xs[3], BATCH * N_IN, out, BATCH, &err), &err);
}

/* The model's parameters, copied to `snapshot`; their count. */
static size_t snap(rk_model *m) {
    float *p;
    size_t n;
    CHECK_OK(rk_params(m, &p, &n, NULL), NULL);
    CHECK(n <= sizeof snapshot / sizeof snapshot[0], "too many parameters for the test's buffer");
    memcpy(snapshot, p, n * sizeof(float));
    return n;
}

static int same_params(rk_model *m, size_t n) {
    float *p;
    size_t len;
    CHECK_OK(rk_params(m, &p, &len, NULL), NULL);
    return len == n && t_first_diff(snapshot, p, n) == n;
}

static size_t save(rk_model *m, uint8_t training_state, uint8_t *buf, size_t cap) {
    size_t bound = 0, written = 0;
    rk_error err;
    CHECK_OK(rk_checkpoint_size(m, training_state, &bound, NULL), NULL);
    CHECK(bound > 0 && bound <= cap, "checkpoint of %zu bytes does not fit the test's %zu", bound, cap);
    CHECK_OK(rk_checkpoint_save(m, training_state, buf, bound, &written, &err), &err);
    CHECK(written > 8 && written <= bound, "wrote %zu bytes, rk_checkpoint_size said %zu", written, bound);
    return written;
}

static void expect_bad(rk_status s, const rk_error *err, const char *what) {
    CHECK(s == RK_E_BAD_CHECKPOINT && err->code == s && err->message[0] != '\0',
          "%s: status %d (%s), message \"%s\"", what, (int)s, rk_status_str(s), err->message);
}

/* The plans of `a` and `b` for `mode` are equal, region by region. */
static void same_plan(const rk_model_config *a, const rk_model_config *b, const rk_mode *mode, const char *what) {
    rk_plan pa, pb;
    rk_error err;
    CHECK_OK(rk_model_plan(a, mode, &pa, &err), &err);
    CHECK_OK(rk_model_plan(b, mode, &pb, &err), &err);
    CHECK(memcmp(&pa, &pb, sizeof pa) == 0,
          "%s: the recovered config plans %" PRIu64 " bytes (params %" PRIu64 ", kv %" PRIu64 "), the original %" PRIu64
          " (params %" PRIu64 ", kv %" PRIu64 ")",
          what, pb.total_bytes, pb.params, pb.kv_cache, pa.total_bytes, pa.params, pa.kv_cache);
}

int main(void) {
    t_quiet_stdio();
    t_lcg g = {5u};
    for (int b = 0; b < 4; b++) {
        t_lcg_fill(&g, xs[b], BATCH * N_IN);
        for (int i = 0; i < BATCH; i++) ys[b][i] = xs[b][i * N_IN] * xs[b][i * N_IN + 1] - 0.5f * xs[b][i * N_IN + 2];
    }
    rk_model_config cfg = mlp_config();
    rk_mode train_mode = t_training(BATCH, rk_optimizer_default(RK_OPT_ADAM, 0.02f));
    rk_mode infer_mode = t_inference(BATCH);
    rk_schedule sched = cosine();
    rk_error err;

    /* The original: a few steps, then both checkpoints. */
    rk_model *a = t_model(&pool, &cfg, &train_mode, NULL);
    CHECK_OK(rk_init_params(a, SEED, NULL), NULL);
    CHECK_OK(rk_set_schedule(a, &sched, &err), &err);
    for (int s = 0; s < STEPS_BEFORE; s++) train(a, s % 3);
    static float pred_a[BATCH], pred_b[BATCH];
    predict(a, pred_a);
    size_t params_len = save(a, 0, params_ckpt, sizeof params_ckpt);
    size_t train_len = save(a, 1, train_ckpt, sizeof train_ckpt);
    CHECK(train_len > params_len, "the training checkpoint (%zu bytes) is not larger than the parameters' (%zu)",
          train_len, params_len);

    /* Parameters into an inference model: the same predictions. */
    rk_model *b = t_model(&pool, &cfg, &infer_mode, NULL);
    CHECK_OK(rk_checkpoint_load(b, params_ckpt, params_len, 0, &err), &err);
    predict(b, pred_b);
    CHECK(t_first_diff(pred_a, pred_b, BATCH) == BATCH, "predictions after loading differ at sample %zu",
          t_first_diff(pred_a, pred_b, BATCH));

    /* Training state into a fresh training model: the next steps are the original's. */
    rk_model *c = t_model(&pool, &cfg, &train_mode, NULL);
    CHECK_OK(rk_checkpoint_load(c, train_ckpt, train_len, 1, &err), &err);
    CHECK_OK(rk_set_schedule(c, &sched, &err), &err);
    for (int s = STEPS_BEFORE; s < STEPS_BEFORE + 3; s++) {
        rk_step_info ia = train(a, s % 3), ic = train(c, s % 3);
        CHECK(ia.steps == (uint64_t)s + 1 && ic.steps == ia.steps, "step %d: steps %" PRIu64 " vs %" PRIu64, s,
              ia.steps, ic.steps);
        CHECK(t_bits(ia.lr) == t_bits(ic.lr), "step %d: lr %.9g vs resumed %.9g", s, (double)ia.lr, (double)ic.lr);
        CHECK(t_bits(ia.loss) == t_bits(ic.loss), "step %d: loss %.9g vs resumed %.9g", s, (double)ia.loss,
              (double)ic.loss);
    }
    size_t n = snap(a);
    CHECK(same_params(c, n), "the resumed model's parameters differ from the original's");

    /* The config in the checkpoint plans the same model. */
    rk_model_config back;
    memset(&back, 0xEE, sizeof back);
    CHECK_OK(rk_checkpoint_config(params_ckpt, params_len, &back, &err), &err);
    CHECK(back.kind == RK_MODEL_MLP && back.u.mlp.n_in == N_IN && back.u.mlp.n_hidden == 2 &&
              back.u.mlp.latent_dims[0] == 16 && back.u.mlp.latent_dims[1] == 8 && back.u.mlp.n_out == 1 &&
              back.u.mlp.act == RK_ACT_GELU,
          "recovered MLP config: kind %u, n_in %u, n_hidden %u, act %u", back.kind, back.u.mlp.n_in,
          back.u.mlp.n_hidden, back.u.mlp.act);
    same_plan(&cfg, &back, &train_mode, "MLP");
    CHECK_OK(rk_checkpoint_config(train_ckpt, train_len, &back, &err), &err);
    same_plan(&cfg, &back, &train_mode, "MLP, training checkpoint");

    rk_model_config tcfg = t_small_transformer(1, RK_KV_F16);
    rk_stack_config *st = &tcfg.u.transformer.stack;
    st->moe = 1;
    st->num_experts = 4;
    st->topk = 2;
    st->capacity = 0;
    st->capacity_factor = 1.5f;
    st->alpha = 0.02f;
    st->ffn_act = RK_ACT_TANH;
    st->attention = RK_ATTN_MQA;
    st->num_groups = 1;
    rk_model *t = t_model(&pool, &tcfg, &infer_mode, NULL);
    CHECK_OK(rk_init_params(t, SEED, NULL), NULL);
    size_t other_len = save(t, 0, other_ckpt, sizeof other_ckpt);
    CHECK_OK(rk_checkpoint_config(other_ckpt, other_len, &back, &err), &err);
    const rk_stack_config *bs = &back.u.transformer.stack;
    CHECK(back.kind == RK_MODEL_TRANSFORMER && back.u.transformer.autoregressive == 1 &&
              back.u.transformer.num_layers == 2 && bs->kv_cache == RK_KV_F16 && bs->moe == 1 &&
              bs->num_experts == 4 && bs->topk == 2 && bs->capacity == 0 && bs->capacity_factor == 1.5f &&
              bs->alpha == 0.02f && bs->ffn_act == RK_ACT_TANH && bs->attention == RK_ATTN_MQA,
          "recovered transformer config: kind %u kv_cache %u moe %u experts %u topk %u factor %g alpha %g act %u "
          "attention %u",
          back.kind, bs->kv_cache, bs->moe, bs->num_experts, bs->topk, (double)bs->capacity_factor,
          (double)bs->alpha, bs->ffn_act, bs->attention);
    same_plan(&tcfg, &back, &infer_mode, "transformer");
    same_plan(&tcfg, &back, &train_mode, "transformer, training");

    /* Bad buffers: an error, and the model unchanged. */
    n = snap(b);
    static const size_t cuts[] = {0, 1, 7, 8, 9, 64};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        rk_status s = rk_checkpoint_load(b, params_ckpt, cuts[i], 0, &err);
        expect_bad(s, &err, "a checkpoint cut short");
    }
    rk_status s = rk_checkpoint_load(b, params_ckpt, params_len / 2, 0, &err);
    expect_bad(s, &err, "half a checkpoint");
    s = rk_checkpoint_load(b, params_ckpt, params_len - 1, 0, &err);
    expect_bad(s, &err, "a checkpoint one byte short");
    CHECK(err.got <= params_len, "the error's offset %" PRIu64 " is past the buffer", err.got);
    s = rk_checkpoint_load(b, other_ckpt, other_len, 0, &err);
    expect_bad(s, &err, "another model's checkpoint");
    s = rk_checkpoint_load(b, train_ckpt, train_len, 1, &err);
    CHECK(s == RK_E_NOT_TRAINABLE, "training state into an inference model: %d", (int)s);
    static uint8_t bad[sizeof params_ckpt];
    memcpy(bad, params_ckpt, params_len);
    bad[0] ^= 0x40; /* the header's length (little-endian u64): now far off */
    expect_bad(rk_checkpoint_load(b, bad, params_len, 0, &err), &err, "a wrong header length");
    memcpy(bad, params_ckpt, params_len);
    bad[8] = 'x'; /* the JSON header's opening brace */
    expect_bad(rk_checkpoint_load(b, bad, params_len, 0, &err), &err, "a corrupt header");
    s = rk_checkpoint_config(bad, params_len, &back, &err);
    expect_bad(s, &err, "rk_checkpoint_config of a corrupt header");
    CHECK(same_params(b, n), "a failed load changed the parameters");
    predict(b, pred_b);
    CHECK(t_first_diff(pred_a, pred_b, BATCH) == BATCH, "a failed load changed the predictions");

    /* A parameters-only checkpoint cannot resume training; the model stays as it was. */
    n = snap(c);
    s = rk_checkpoint_load(c, params_ckpt, params_len, 1, &err);
    expect_bad(s, &err, "resuming from a parameters-only checkpoint");
    CHECK(same_params(c, n), "a failed resume changed the parameters");
    rk_step_info ia = train(a, 0), ic = train(c, 0);
    CHECK(ia.steps == ic.steps && t_bits(ia.loss) == t_bits(ic.loss),
          "after a failed resume the model is not where it was: steps %" PRIu64 " vs %" PRIu64, ia.steps, ic.steps);

    printf("checkpoint_roundtrip: parameters %zu bytes, training state %zu bytes, transformer %zu bytes: ok\n",
           params_len, train_len, other_len);
    rk_model_deinit(t);
    rk_model_deinit(c);
    rk_model_deinit(b);
    rk_model_deinit(a);
    t_pool_check(&pool);
    return 0;
}
