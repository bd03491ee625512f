/*
 * Abuse of the C ABI beyond bad arguments (error_paths.c covers those): handles that are copies,
 * garbage or misaligned, arenas one byte short, calls in the wrong order, an rk_error inside the
 * arena, and loads that must change nothing when they fail. Every call must return its RK_E_*
 * code and nothing outside the arenas may change (guard bytes); no heap is used.
 *
 * Nothing here is undefined behaviour in C: a copied handle is a memcpy of bytes into another
 * aligned static buffer, garbage handles are aligned buffers of chosen bytes, and misaligned
 * pointers are made through integers and only passed, never dereferenced by this program.
 */
#include "rk_test.h"

T_POOL(pool, 1 << 20);

#define N_IN 3
static float x[2 * N_IN], y[2], out[2];
static uint8_t ckpt[1 << 14], bad[1 << 14];
static _Alignas(64) unsigned char copy[1 << 14]; /* where handles are copied to */
static int checks = 0;

#define EXPECT(call, code)                                                                          \
    do {                                                                                            \
        rk_status got_ = (call);                                                                    \
        checks++;                                                                                   \
        if (got_ != (code))                                                                         \
            t_fail(__FILE__, __LINE__, #call, "returned %d (%s), expected %d", (int)got_, rk_status_str(got_), \
                   (int)(code));                                                                    \
    } while (0)

static rk_model_config mlp_config(void) { return t_mlp(N_IN, 6); }

/* Every model call with `m` must return RK_E_BAD_POINTER and leave `err` saying so. */
static void refused(rk_model *m, const char *what) {
    rk_error err;
    rk_dims dims;
    float *data;
    size_t len;
    EXPECT(rk_predict(m, x, 2 * N_IN, out, 2, &err), RK_E_BAD_POINTER);
    CHECK(err.code == RK_E_BAD_POINTER && strcmp(err.field, "model") == 0, "%s: err says %d, field \"%s\"", what,
          (int)err.code, err.field);
    EXPECT(rk_train_step(m, x, 2 * N_IN, y, 2, NULL, &err), RK_E_BAD_POINTER);
    EXPECT(rk_model_dims(m, &dims, NULL), RK_E_BAD_POINTER);
    EXPECT(rk_params(m, &data, &len, NULL), RK_E_BAD_POINTER);
    EXPECT(rk_init_params(m, 3, NULL), RK_E_BAD_POINTER);
    EXPECT(rk_checkpoint_load(m, ckpt, 16, 0, &err), RK_E_BAD_POINTER);
    rk_model_deinit(m); /* ignored */
}

/* A handle copied elsewhere (alone, or with its whole arena) is refused; the original works. */
static void copied_handles(void) {
    rk_model_config cfg = mlp_config();
    rk_mode mode = t_training(2, rk_optimizer_default(RK_OPT_ADAM, 1e-2f));
    rk_plan plan;
    rk_model *m = t_model(&pool, &cfg, &mode, &plan);
    CHECK(plan.total_bytes <= sizeof copy, "arena of %" PRIu64 " bytes", plan.total_bytes);
    rk_error err;
    CHECK_OK(rk_init_params(m, 1, &err), &err);
    memcpy(copy, m, (size_t)plan.total_bytes); /* the arena, handle included */
    refused((rk_model *)(void *)copy, "a copy of the arena");
    memcpy(copy, m, 16); /* the first bytes only: the magic and the address */
    memset(copy + 16, 0, sizeof copy - 16);
    refused((rk_model *)(void *)copy, "a copy of the handle's tag");
    /* A copy put back in place is the handle again (it is the same bytes at the same address). */
    memcpy(copy, m, (size_t)plan.total_bytes);
    memcpy((void *)m, copy, (size_t)plan.total_bytes);
    CHECK_OK(rk_train_step(m, x, 2 * N_IN, y, 2, NULL, &err), &err);
    /* The deinit of a copy did not end the original. */
    rk_model_deinit((rk_model *)(void *)copy);
    CHECK_OK(rk_predict(m, x, 2 * N_IN, out, 2, &err), &err);
    rk_model_deinit(m);
    refused(m, "after rk_model_deinit");
    /* Garbage: every byte value, and the magic followed by a wrong address. */
    for (int v = 0; v < 256; v += 17) {
        memset(copy, v, sizeof copy);
        refused((rk_model *)(void *)copy, "a garbage handle");
    }
    /* A misaligned pointer into a live arena. */
    rk_model *live = t_model(&pool, &cfg, &mode, NULL);
    refused((rk_model *)(uintptr_t)((uintptr_t)(void *)live + 4), "a misaligned handle");
    refused((rk_model *)(uintptr_t)((uintptr_t)(void *)live + 8), "a pointer into the handle");
    CHECK_OK(rk_predict(live, x, 2 * N_IN, out, 2, &err), &err);
    rk_model_deinit(live);
}

/* Arenas one byte short, at every alignment that is allowed, fail and are not written. */
static void short_arenas(void) {
    rk_model_config cfgs[2] = {mlp_config(), t_small_transformer(1, RK_KV_NONE)};
    rk_mode modes[2] = {t_inference(2), t_training(2, rk_optimizer_default(RK_OPT_SGD, 0.1f))};
    for (int c = 0; c < 2; c++)
        for (int k = 0; k < 2; k++) {
            rk_plan plan;
            rk_error err;
            CHECK_OK(rk_model_plan(&cfgs[c], &modes[k], &plan, &err), &err);
            size_t need = (size_t)plan.total_bytes;
            unsigned char *arena = t_pool_take(&pool, need);
            rk_model *m = NULL;
            for (size_t less = 1; less <= 64 && less <= need; less += 7) {
                EXPECT(rk_model_init(&cfgs[c], &modes[k], arena, need - less, &m, &err), RK_E_ARENA_TOO_SMALL);
                CHECK(err.needed == need && err.got == need - less, "needed %" PRIu64 " got %" PRIu64, err.needed,
                      err.got);
                CHECK(m == NULL, "a failed init wrote *out");
                for (size_t i = 0; i < need; i++) CHECK(arena[i] == T_GARBAGE, "a failed init wrote byte %zu", i);
            }
            EXPECT(rk_model_init(&cfgs[c], &modes[k], arena, 0, &m, &err), RK_E_ARENA_TOO_SMALL);
            /* A misaligned arena (by 4, then by 1), even when large enough. */
            EXPECT(rk_model_init(&cfgs[c], &modes[k], arena + 4, need - 4, &m, &err), RK_E_BAD_POINTER);
            EXPECT(rk_model_init(&cfgs[c], &modes[k], arena + 1, need - 1, &m, &err), RK_E_BAD_POINTER);
            CHECK_OK(rk_model_init(&cfgs[c], &modes[k], arena, need, &m, &err), &err);
            rk_model_deinit(m);
        }
}

/* rk_error: reset by a successful call; never written inside the arena. */
static void error_struct(void) {
    rk_model_config cfg = mlp_config();
    rk_mode mode = t_inference(2);
    rk_plan plan;
    rk_error err;
    CHECK_OK(rk_model_plan(&cfg, &mode, &plan, &err), &err);
    unsigned char *arena = t_pool_take(&pool, (size_t)plan.total_bytes);
    rk_model *m = NULL;
    EXPECT(rk_model_init(&cfg, &mode, arena, 8, &m, &err), RK_E_ARENA_TOO_SMALL);
    CHECK(err.code == RK_E_ARENA_TOO_SMALL, "err.code %d", (int)err.code);
    CHECK_OK(rk_model_init(&cfg, &mode, arena, (size_t)plan.total_bytes, &m, &err), &err);
    CHECK(err.code == RK_OK && strcmp(err.message, "ok") == 0 && err.field[0] == 0 && err.needed == 0 && err.got == 0,
          "after a success err holds code %d, field \"%s\", message \"%s\"", (int)err.code, err.field, err.message);
    EXPECT(rk_predict(m, x, 1, out, 2, &err), RK_E_BAD_LEN);
    CHECK(err.code == RK_E_BAD_LEN, "err.code %d", (int)err.code);
    CHECK_OK(rk_predict(m, x, 2 * N_IN, out, 2, &err), &err);
    CHECK(err.code == RK_OK && strcmp(err.message, "ok") == 0, "after a success err.code is %d", (int)err.code);
    rk_model_deinit(m);
    /* An err inside the arena: init refuses it and writes neither it nor the arena. */
    memset(arena, T_GARBAGE, (size_t)plan.total_bytes);
    rk_error *inside = (rk_error *)(void *)(arena + 64);
    EXPECT(rk_model_init(&cfg, &mode, arena, (size_t)plan.total_bytes, &m, inside), RK_E_BAD_POINTER);
    for (size_t i = 0; i < plan.total_bytes; i++) CHECK(arena[i] == T_GARBAGE, "init with err inside wrote byte %zu", i);
    CHECK_OK(rk_model_init(&cfg, &mode, arena, (size_t)plan.total_bytes, &m, &err), &err);
    unsigned char before[64];
    memcpy(before, arena + 64, 64);
    EXPECT(rk_predict(m, x, 2 * N_IN, out, 2, inside), RK_E_BAD_POINTER);
    CHECK(memcmp(before, arena + 64, 64) == 0, "a call wrote its err inside the arena");
    CHECK_OK(rk_predict(m, x, 2 * N_IN, out, 2, &err), &err);
    rk_model_deinit(m);
}

/* Calls in an order a program may get wrong. */
static void call_order(void) {
    rk_model_config cfg = mlp_config();
    rk_mode inf = t_inference(2), trn = t_training(2, rk_optimizer_default(RK_OPT_ADAM, 1e-2f));
    rk_error err;
    rk_model *i = t_model(&pool, &cfg, &inf, NULL), *t = t_model(&pool, &cfg, &trn, NULL);
    /* Before rk_init_params the parameters are zeros: prediction works and gives zeros. */
    CHECK_OK(rk_predict(i, x, 2 * N_IN, out, 2, &err), &err);
    CHECK(out[0] == 0.0f && out[1] == 0.0f, "an uninitialised model predicts %g %g", out[0], out[1]);
    /* Training calls on an inference model; generation on an MLP; a schedule before any step
     * and after steps. */
    rk_schedule s = rk_schedule_default();
    EXPECT(rk_set_schedule(i, &s, &err), RK_E_NOT_TRAINABLE);
    float loss;
    EXPECT(rk_eval_loss(i, x, 2 * N_IN, y, 2, &loss, &err), RK_E_NOT_TRAINABLE);
    CHECK_OK(rk_set_schedule(t, &s, &err), &err);
    CHECK_OK(rk_init_params(t, 5, &err), &err);
    rk_step_info info;
    CHECK_OK(rk_train_step(t, x, 2 * N_IN, y, 2, &info, &err), &err);
    CHECK_OK(rk_set_schedule(t, &s, &err), &err);
    CHECK_OK(rk_train_step(t, x, 2 * N_IN, y, 2, &info, &err), &err);
    CHECK(info.steps == 2, "steps %" PRIu64, info.steps);
    /* Re-initialising a live arena gives a fresh model at the same address. */
    rk_model *again = NULL;
    unsigned char *arena = (unsigned char *)(void *)t;
    rk_plan plan;
    CHECK_OK(rk_model_plan(&cfg, &trn, &plan, &err), &err);
    CHECK_OK(rk_model_init(&cfg, &trn, arena, (size_t)plan.total_bytes, &again, &err), &err);
    CHECK(again == t, "re-init moved the handle");
    CHECK_OK(rk_train_step(again, x, 2 * N_IN, y, 2, &info, &err), &err);
    CHECK(info.steps == 1, "a re-initialised model counts %" PRIu64 " steps", info.steps);
    /* A checkpoint of one model loaded into another shape is refused. */
    size_t written;
    CHECK_OK(rk_checkpoint_save(again, 0, ckpt, sizeof ckpt, &written, &err), &err);
    rk_model_config other = mlp_config();
    other.u.mlp.latent_dims[0] = 7;
    rk_model *o = t_model(&pool, &other, &inf, NULL);
    EXPECT(rk_checkpoint_load(o, ckpt, written, 0, &err), RK_E_BAD_CHECKPOINT);
    rk_model_deinit(o);
    rk_model_deinit(again);
    rk_model_deinit(i);
}

/* Replace `"regkern.crc32c":"xxxxxxxx"` (and its leading comma) in the header by spaces, as a tool
 * that rewrote the metadata would leave a file: the checksum is then not checked. */
static void strip_crc(uint8_t *buf, size_t len) {
    static const char key[] = ",\"regkern.crc32c\":\"";
    size_t klen = sizeof key - 1;
    for (size_t i = 8; i + klen + 9 <= len; i++)
        if (memcmp(buf + i, key, klen) == 0) {
            memset(buf + i, ' ', klen + 9);
            return;
        }
    t_fail(__FILE__, __LINE__, "strip_crc", "no checksum in the header");
}

/* A training-state load that fails (a NaN in the optimizer state, the last tensor; a torn
 * file) changes neither the parameters nor the optimizer state nor the step count. */
static void failed_loads_change_nothing(void) {
    rk_model_config cfg = mlp_config();
    rk_mode trn = t_training(2, rk_optimizer_default(RK_OPT_ADAM, 1e-2f));
    rk_error err;
    rk_step_info info;
    rk_model *a = t_model(&pool, &cfg, &trn, NULL), *b = t_model(&pool, &cfg, &trn, NULL);
    CHECK_OK(rk_init_params(a, 2, &err), &err);
    CHECK_OK(rk_init_params(b, 9, &err), &err);
    for (int k = 0; k < 3; k++) CHECK_OK(rk_train_step(a, x, 2 * N_IN, y, 2, NULL, &err), &err);
    CHECK_OK(rk_train_step(b, x, 2 * N_IN, y, 2, NULL, &err), &err);
    size_t n, len;
    CHECK_OK(rk_checkpoint_save(a, 1, ckpt, sizeof ckpt, &n, &err), &err);
    /* b's full training state, to compare with after the failed loads. */
    static uint8_t b_before[1 << 14], b_after[1 << 14];
    size_t nb;
    CHECK_OK(rk_checkpoint_save(b, 1, b_before, sizeof b_before, &nb, &err), &err);
    memcpy(bad, ckpt, n);
    strip_crc(bad, n);
    CHECK_OK(rk_checkpoint_config(bad, n, &cfg, &err), &err); /* still a valid file */
    float nan = NAN;
    memcpy(bad + n - 4, &nan, 4);
    EXPECT(rk_checkpoint_load(b, bad, n, 1, &err), RK_E_BAD_CHECKPOINT);
    CHECK(strstr(err.message, "NaN") != NULL, "message: %s", err.message);
    for (size_t cut = 1; cut < n; cut += 13) EXPECT(rk_checkpoint_load(b, ckpt, cut, 1, &err), RK_E_BAD_CHECKPOINT);
    memcpy(bad, ckpt, n);
    bad[n - 1] ^= 1; /* a flipped bit: the checksum */
    EXPECT(rk_checkpoint_load(b, bad, n, 1, &err), RK_E_BAD_CHECKPOINT);
    CHECK_OK(rk_checkpoint_save(b, 1, b_after, sizeof b_after, &len, &err), &err);
    CHECK(len == nb && memcmp(b_before, b_after, nb) == 0, "a failed load changed the training state");
    /* The good file loads, and the next steps of a and b agree bit for bit. */
    CHECK_OK(rk_checkpoint_load(b, ckpt, n, 1, &err), &err);
    CHECK_OK(rk_train_step(a, x, 2 * N_IN, y, 2, &info, &err), &err);
    CHECK_OK(rk_train_step(b, x, 2 * N_IN, y, 2, &info, &err), &err);
    CHECK(info.steps == 4, "steps %" PRIu64 " after resuming at 3", info.steps);
    float *pa, *pb;
    CHECK_OK(rk_params(a, &pa, &len, &err), &err);
    CHECK_OK(rk_params(b, &pb, &n, &err), &err);
    CHECK(len == n && t_first_diff(pa, pb, n) == n, "resumed parameters differ");
    rk_model_deinit(a);
    rk_model_deinit(b);
}

int main(void) {
    t_quiet_stdio();
    t_lcg g = {7u};
    t_lcg_fill(&g, x, 2 * N_IN);
    t_lcg_fill(&g, y, 2);
    copied_handles();
    short_arenas();
    error_struct();
    call_order();
    failed_loads_change_nothing();
    t_pool_check(&pool);
    printf("abuse: %d checks: ok\n", checks);
    return 0;
}
