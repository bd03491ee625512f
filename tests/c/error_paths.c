/*
 * Every exported function of regkern.h with bad arguments. Each call must return the expected
 * RK_E_* code; where the function takes an rk_error, the struct must be filled (code, a
 * non-empty message, the offending field where one is named, needed/got for sizes), and the
 * same call with err NULL must return the same code. rk_status_str must give each code's text.
 *
 * Every arena comes from one static pool, between guard bytes: after all the calls, nothing
 * outside the arenas may have changed, and a failed rk_model_init must not have touched the
 * arena it was given. Nothing here is undefined behaviour in C: bad pointers are NULL, point
 * into the arena, are misaligned byte pointers, or point to zeroed (aligned) memory.
 */
#include "rk_test.h"

T_POOL(pool, 1 << 21);

/* ---------------------------------------------------------------------------------------- */
/* Expectations. */

/* The text rk_status_str must give for each code (0, -1, ..., -12). */
static const char *const STATUS_TEXT[] = {
    "ok",
    "invalid configuration",
    "buffer has the wrong length",
    "arena too small",
    "batch larger than planned",
    "non-finite loss or gradient",
    "size overflow",
    "empty dataset",
    "model was planned for inference only",
    "optimizer needs more state than planned",
    "sequence longer than max_seq_len",
    "invalid checkpoint",
    "null or misaligned pointer, or not a model handle",
};
#define N_STATUS (int)(sizeof STATUS_TEXT / sizeof STATUS_TEXT[0])

static int checks = 0;

/* Length of the string in `buf` (`cap` bytes), or `cap` when it has no NUL (strnlen is POSIX). */
static size_t bounded_len(const char *buf, size_t cap) {
    const char *nul = memchr(buf, '\0', cap);
    return nul ? (size_t)(nul - buf) : cap;
}

/* A status: `got` must be `code`, and rk_status_str must describe it. */
static void expect_code(rk_status got, rk_status code, const char *call, int line) {
    checks++;
    if (got != code)
        t_fail(__FILE__, line, call, "returned %d (%s), expected %d (%s)", (int)got, rk_status_str(got), (int)code,
               rk_status_str(code));
    CHECK(-code >= 0 && -code < N_STATUS && strcmp(rk_status_str(code), STATUS_TEXT[-code]) == 0,
          "rk_status_str(%d) is \"%s\"", (int)code, rk_status_str(code));
}

/* An error detail: filled for `code`, naming `field` unless it is NULL. */
static void expect_detail(const rk_error *err, rk_status code, const char *field, const char *call, int line) {
    if (err->code != code) t_fail(__FILE__, line, call, "err.code is %d, expected %d", (int)err->code, (int)code);
    size_t len = bounded_len(err->message, sizeof err->message);
    if (len == 0 || len == sizeof err->message)
        t_fail(__FILE__, line, call, "err.message is empty or not NUL-terminated (%zu bytes)", len);
    if (bounded_len(err->field, sizeof err->field) == sizeof err->field)
        t_fail(__FILE__, line, call, "err.field is not NUL-terminated");
    if (field && strcmp(err->field, field) != 0)
        t_fail(__FILE__, line, call, "err.field is \"%s\", expected \"%s\" (message: %s)", err->field, field,
               err->message);
}

/* `call` (of a function without an rk_error) must return `code`. */
#define EXPECT(call, code) expect_code((call), (code), #call, __LINE__)

/* `call`, which passes `ERR` as its rk_error, must return `code` and fill it, naming `field`
 * (NULL: any); then, with ERR NULL, return the same code. */
#define EXPECT_ERR(call, code, field)                                        \
    do {                                                                     \
        rk_error *ERR = &err;                                                \
        memset(ERR, 0x5A, sizeof *ERR); /* not a valid C string: must be overwritten */ \
        expect_code((call), (code), #call, __LINE__);                        \
        expect_detail(ERR, (code), (field), #call, __LINE__);                \
        ERR = NULL;                                                          \
        expect_code((call), (code), #call " (err NULL)", __LINE__);          \
    } while (0)

/* The size details of the last EXPECT_ERR. */
#define EXPECT_SIZES(need, given)                                                              \
    CHECK(err.needed == (uint64_t)(need) && err.got == (uint64_t)(given),                      \
          "err.needed %" PRIu64 " err.got %" PRIu64 ", expected %" PRIu64 " and %" PRIu64, err.needed, err.got, \
          (uint64_t)(need), (uint64_t)(given))

static rk_error err;

/* Valid buffers for the calls (an MLP 4 -> 8 -> 1 with max_batch 2). */
#define N_IN 4
#define ARENA 16384 /* more than any model of planning() needs */
static float x[2 * N_IN], y[2], out[2], big_out[64], prompt[4];
static uint8_t ckpt[1 << 14], ckpt2[1 << 14];
static _Alignas(64) unsigned char zeroed[4096]; /* a "handle" of zeros */

static rk_model_config mlp_config(void) { return t_mlp(N_IN, 8); }

/* ---------------------------------------------------------------------------------------- */

static void status_strings(void) {
    CHECK(rk_version() == ((uint32_t)RK_VERSION_MAJOR << 16 | RK_VERSION_MINOR << 8 | RK_VERSION_PATCH),
          "rk_version() is %" PRIx32, rk_version());
    for (int c = 0; c < N_STATUS; c++)
        CHECK(strcmp(rk_status_str(-c), STATUS_TEXT[c]) == 0, "rk_status_str(%d) is \"%s\"", -c, rk_status_str(-c));
    static const rk_status unknown[] = {1, 2, -13, -100, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        CHECK(strcmp(rk_status_str(unknown[i]), "unknown status code") == 0, "rk_status_str(%d) is \"%s\"",
              (int)unknown[i], rk_status_str(unknown[i]));
}

static void defaults(void) {
    rk_model_config bad = rk_model_config_default(99);
    CHECK(bad.kind == 0, "rk_model_config_default(99).kind is %u", bad.kind);
    rk_optimizer opt = rk_optimizer_default(7, 0.1f);
    CHECK(opt.kind == 7 && opt.lr == 0.1f, "rk_optimizer_default(7) kept kind %u lr %g", opt.kind, (double)opt.lr);
    rk_schedule s = rk_schedule_default();
    CHECK(s.kind == RK_SCHED_CONSTANT && s.clip_grad_norm == 0.0f && s.steps_per_epoch >= 1 && s.total_steps >= 1,
          "rk_schedule_default: kind %u", s.kind);
}

/* rk_model_plan and rk_model_init with bad pointers and configs. */
static void planning(void) {
    rk_model_config cfg = mlp_config();
    rk_mode mode = t_inference(2);
    rk_plan plan;
    rk_model *m = NULL;
    unsigned char *arena = t_pool_take(&pool, ARENA);

    EXPECT_ERR(rk_model_plan(NULL, &mode, &plan, ERR), RK_E_BAD_POINTER, "config");
    EXPECT_ERR(rk_model_plan(&cfg, NULL, &plan, ERR), RK_E_BAD_POINTER, "mode");
    EXPECT_ERR(rk_model_plan(&cfg, &mode, NULL, ERR), RK_E_BAD_POINTER, "out");
    EXPECT_ERR(rk_model_init(NULL, &mode, arena, ARENA, &m, ERR), RK_E_BAD_POINTER, "config");
    EXPECT_ERR(rk_model_init(&cfg, NULL, arena, ARENA, &m, ERR), RK_E_BAD_POINTER, "mode");
    EXPECT_ERR(rk_model_init(&cfg, &mode, NULL, 4096, &m, ERR), RK_E_BAD_POINTER, "arena");
    EXPECT_ERR(rk_model_init(&cfg, &mode, arena, ARENA, NULL, ERR), RK_E_BAD_POINTER, "out");
    EXPECT_ERR(rk_model_init(&cfg, &mode, arena + 1, ARENA - 1, &m, ERR), RK_E_BAD_POINTER, "arena");
    /* `out` inside the arena. */
    rk_model **inside = (rk_model **)(void *)(arena + 64);
    EXPECT_ERR(rk_model_init(&cfg, &mode, arena, ARENA, inside, ERR), RK_E_BAD_POINTER, "out");
    CHECK(m == NULL, "a failed rk_model_init wrote *out");

    /* Too small: needed = plan.total_bytes, got = what was given; the arena is not touched. */
    CHECK_OK(rk_model_plan(&cfg, &mode, &plan, &err), &err);
    size_t total = (size_t)plan.total_bytes;
    unsigned char *small = t_pool_take(&pool, total - 1);
    EXPECT_ERR(rk_model_init(&cfg, &mode, small, total - 1, &m, ERR), RK_E_ARENA_TOO_SMALL, "arena_bytes");
    EXPECT_SIZES(total, total - 1);
    EXPECT_ERR(rk_model_init(&cfg, &mode, small, 0, &m, ERR), RK_E_ARENA_TOO_SMALL, "arena_bytes");
    EXPECT_SIZES(total, 0);
    for (size_t i = 0; i < total - 1; i++)
        CHECK(small[i] == T_GARBAGE, "a failed rk_model_init wrote byte %zu of the arena", i);
    CHECK(m == NULL, "a failed rk_model_init wrote *out");

    /* Invalid configs. */
    rk_model_config c = cfg;
    c.kind = 99;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "type");
    EXPECT_ERR(rk_model_init(&c, &mode, arena, ARENA, &m, ERR), RK_E_BAD_CONFIG, "type");
    c = rk_model_config_default(99);
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "type");
    c = cfg;
    c.u.mlp.n_hidden = RK_MAX_HIDDEN + 1;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "n_hidden");
    c.u.mlp.n_hidden = UINT32_MAX;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "n_hidden");
    c = cfg;
    c.u.mlp.act = 7;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "act");
    c = cfg;
    c.u.mlp.n_in = 0;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "n_in");
    c = cfg;
    c.u.mlp.latent_dims[0] = 0;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "latent_dims");
    c = rk_model_config_default(RK_MODEL_LINEAR);
    c.u.linear.n_out = 0;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, NULL);

    rk_model_config t = t_small_transformer(0, RK_KV_NONE);
    c = t;
    c.u.transformer.stack.num_heads = 3; /* does not divide embed_dim 16 */
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "num_heads");
    c = t;
    c.u.transformer.stack.num_groups = 3; /* does not divide num_heads 4 */
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "num_groups");
    c = t;
    c.u.transformer.stack.attention = 9;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "attention");
    c = t;
    c.u.transformer.stack.ffn_act = 7;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "ffn_act");
    c = t;
    c.u.transformer.stack.kv_cache = 9;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "kv_cache");
    c = t;
    c.u.transformer.stack.kv_cache = RK_KV_F32; /* a cache needs an autoregressive model */
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "kv_cache");
    c = t;
    c.u.transformer.num_layers = 0;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "num_layers");
    c = t;
    c.u.transformer.stack.max_seq_len = 0;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "max_seq_len");
    /* The planned sequence length: at most max_seq_len; shorter plans are smaller. */
    {
        rk_mode short_mode = mode;
        rk_plan full, part;
        CHECK_OK(rk_model_plan(&t, &mode, &full, &err), &err);
        short_mode.seq_len = t.u.transformer.stack.max_seq_len + 1;
        EXPECT_ERR(rk_model_plan(&t, &short_mode, &plan, ERR), RK_E_BAD_CONFIG, "seq_len");
        short_mode.seq_len = 2;
        CHECK_OK(rk_model_plan(&t, &short_mode, &part, &err), &err);
        CHECK(part.total_bytes < full.total_bytes, "a plan for 2 tokens is not smaller than for max_seq_len");
        CHECK(part.params == full.params, "seq_len changed the parameters");
    }
    /* A lean training plan keeps no attention probabilities: smaller acts, the same params. */
    {
        rk_mode train = t_training(2, rk_optimizer_default(RK_OPT_ADAM, 0.01f)), lean = train;
        rk_plan fast, small;
        lean.lean_memory = 1;
        CHECK_OK(rk_model_plan(&t, &train, &fast, &err), &err);
        CHECK_OK(rk_model_plan(&t, &lean, &small, &err), &err);
        CHECK(small.acts < fast.acts && small.params == fast.params, "lean_memory did not shrink the activations");
    }
    c = t;
    c.u.transformer.stack.moe = 1;
    c.u.transformer.stack.num_experts = 0;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "num_experts");
    c.u.transformer.stack.num_experts = 4;
    c.u.transformer.stack.topk = 5;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "topk");
    c.u.transformer.stack.topk = 0;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "topk");
    c.u.transformer.stack.topk = 2;
    c.u.transformer.stack.capacity_factor = NAN;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "capacity_factor");
    c.u.transformer.stack.capacity_factor = 1.25f;
    c.u.transformer.stack.alpha = -1.0f;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "alpha");
    c = rk_model_config_default(RK_MODEL_ENCODER_DECODER);
    c.u.encdec.num_decoder_layers = 0;
    EXPECT_ERR(rk_model_plan(&c, &mode, &plan, ERR), RK_E_BAD_CONFIG, "num_decoder_layers");
    /* Sizes past the address space. */
    c = t;
    c.u.transformer.stack.embed_dim = 1u << 31;
    c.u.transformer.stack.ffn_dim = 1u << 31;
    c.u.transformer.stack.num_heads = 1;
    c.u.transformer.stack.num_groups = 1;
    c.u.transformer.stack.max_seq_len = UINT32_MAX;
    rk_mode huge = t_inference(UINT32_MAX);
    EXPECT_ERR(rk_model_plan(&c, &huge, &plan, ERR), RK_E_SIZE_OVERFLOW, NULL);

    /* Invalid modes. */
    rk_mode mb = mode;
    mb.max_batch = 0;
    EXPECT_ERR(rk_model_plan(&cfg, &mb, &plan, ERR), RK_E_BAD_CONFIG, "batch_size");
    rk_mode tm = t_training(2, rk_optimizer_default(9, 0.01f));
    EXPECT_ERR(rk_model_plan(&cfg, &tm, &plan, ERR), RK_E_BAD_CONFIG, "kind");
    EXPECT_ERR(rk_model_init(&cfg, &tm, arena, ARENA, &m, ERR), RK_E_BAD_CONFIG, "kind");
    tm.optimizer = rk_optimizer_default(RK_OPT_ADAM, -1.0f);
    EXPECT_ERR(rk_model_plan(&cfg, &tm, &plan, ERR), RK_E_BAD_CONFIG, "lr");
    tm.optimizer = rk_optimizer_default(RK_OPT_ADAM, 0.01f);
    tm.optimizer.beta1 = 1.0f;
    EXPECT_ERR(rk_model_plan(&cfg, &tm, &plan, ERR), RK_E_BAD_CONFIG, "beta1");
    tm.optimizer = rk_optimizer_default(RK_OPT_ADAM, INFINITY);
    EXPECT_ERR(rk_model_plan(&cfg, &tm, &plan, ERR), RK_E_BAD_CONFIG, "lr");
    tm.optimizer = rk_optimizer_default(RK_OPT_ADAM, 0.01f);
    tm.optimizer.eps = -1.0f;
    EXPECT_ERR(rk_model_plan(&cfg, &tm, &plan, ERR), RK_E_BAD_CONFIG, "eps");
    tm.optimizer = rk_optimizer_default(RK_OPT_RMSPROP, 0.01f);
    tm.optimizer.weight_decay = NAN;
    EXPECT_ERR(rk_model_plan(&cfg, &tm, &plan, ERR), RK_E_BAD_CONFIG, "weight_decay");
    tm.optimizer = rk_optimizer_default(RK_OPT_SGD, 0.01f);
    tm.optimizer.momentum = -0.5f;
    EXPECT_ERR(rk_model_plan(&cfg, &tm, &plan, ERR), RK_E_BAD_CONFIG, "momentum");
    tm.optimizer.momentum = 0.0f;
    tm.optimizer.nesterov = 1; /* needs momentum */
    EXPECT_ERR(rk_model_plan(&cfg, &tm, &plan, ERR), RK_E_BAD_CONFIG, "nesterov");
    /* An inference mode ignores the optimizer, even a bad one. */
    rk_mode im = t_inference(2);
    im.optimizer.kind = 9;
    CHECK_OK(rk_model_plan(&cfg, &im, &plan, &err), &err);
    CHECK(m == NULL, "a failed rk_model_init wrote *out");
}

/* Calls every function that takes a model, with `m` and otherwise valid arguments: each must
 * return `code` (a bad handle). */
static void every_model_call(rk_model *m, rk_status code, const char *what) {
    rk_dims dims;
    rk_step_info info;
    rk_tensor_info tinfo;
    rk_schedule sched = rk_schedule_default();
    float loss, *data;
    size_t len, bytes, written;
    printf("  bad handle: %s\n", what);
    EXPECT(rk_init_params(m, 1, NULL), code);
    EXPECT(rk_set_seq_len(m, 1, NULL), code);
    EXPECT(rk_set_kernels(m, RK_KERNELS_PORTABLE, NULL), code);
    EXPECT(rk_set_target_len(m, 1, NULL), code);
    EXPECT(rk_model_dims(m, &dims, NULL), code);
    EXPECT_ERR(rk_set_schedule(m, &sched, ERR), code, "model");
    EXPECT_ERR(rk_train_step(m, x, 2 * N_IN, y, 2, &info, ERR), code, "model");
    EXPECT_ERR(rk_eval_loss(m, x, 2 * N_IN, y, 2, &loss, ERR), code, "model");
    EXPECT_ERR(rk_predict(m, x, 2 * N_IN, out, 2, ERR), code, "model");
    EXPECT_ERR(rk_generate(m, prompt, 4, 4, big_out, 4, 4, 0, 0, ERR), code, "model");
    EXPECT(rk_checkpoint_size(m, 0, &bytes, NULL), code);
    EXPECT_ERR(rk_checkpoint_save(m, 0, ckpt, sizeof ckpt, &written, ERR), code, "model");
    EXPECT_ERR(rk_checkpoint_load(m, ckpt, sizeof ckpt, 0, ERR), code, "model");
    EXPECT(rk_params(m, &data, &len, NULL), code);
    EXPECT(rk_param_info(m, 0, &tinfo, NULL), code);
    rk_model_deinit(m); /* ignored */
}

/* A valid inference MLP and a valid training MLP; bad arguments for each function. */
static void model_calls(void) {
    rk_model_config cfg = mlp_config();
    rk_mode imode = t_inference(2);
    rk_mode tmode = t_training(2, rk_optimizer_default(RK_OPT_SGD, 0.05f));
    rk_plan iplan, tplan;
    rk_model *inf = t_model(&pool, &cfg, &imode, &iplan);
    rk_model *trn = t_model(&pool, &cfg, &tmode, &tplan);
    unsigned char *iarena = (unsigned char *)(void *)inf, *tarena = (unsigned char *)(void *)trn;
    CHECK_OK(rk_init_params(inf, 1, NULL), NULL);
    CHECK_OK(rk_init_params(trn, 1, NULL), NULL);
    t_lcg g = {1u};
    t_lcg_fill(&g, x, 2 * N_IN);
    t_lcg_fill(&g, y, 2);
    t_lcg_fill(&g, prompt, 4);
    rk_dims dims;
    rk_step_info info;
    rk_tensor_info tinfo;
    float loss, *data;
    size_t len, bytes, written;

    /* NULL outputs of functions without an rk_error. */
    EXPECT(rk_model_dims(inf, NULL, NULL), RK_E_BAD_POINTER);
    EXPECT(rk_params(inf, NULL, &len, NULL), RK_E_BAD_POINTER);
    EXPECT(rk_params(inf, &data, NULL, NULL), RK_E_BAD_POINTER);
    EXPECT(rk_param_info(inf, 0, NULL, NULL), RK_E_BAD_POINTER);
    EXPECT(rk_checkpoint_size(inf, 0, NULL, NULL), RK_E_BAD_POINTER);

    /* Kernel choice. */
    EXPECT(rk_set_kernels(inf, 2, NULL), RK_E_BAD_CONFIG);
    EXPECT(rk_set_kernels(inf, UINT32_MAX, NULL), RK_E_BAD_CONFIG);
    CHECK_OK(rk_set_kernels(inf, RK_KERNELS_PORTABLE, NULL), NULL);
    CHECK_OK(rk_set_kernels(inf, RK_KERNELS_AUTO, NULL), NULL);

    /* Sequence lengths. */
    CHECK_OK(rk_model_dims(inf, &dims, NULL), NULL);
    EXPECT(rk_set_seq_len(inf, 0, NULL), RK_E_BAD_CONFIG);
    EXPECT(rk_set_seq_len(inf, (size_t)dims.max_seq_len + 1, NULL), RK_E_BAD_CONFIG);
    EXPECT(rk_set_target_len(inf, 1, NULL), RK_E_BAD_CONFIG); /* not an encoder-decoder */

    /* The parameter table. */
    EXPECT(rk_param_info(inf, (size_t)dims.param_tensors, &tinfo, NULL), RK_E_BAD_LEN);
    EXPECT(rk_param_info(inf, SIZE_MAX, &tinfo, NULL), RK_E_BAD_LEN);
    CHECK_OK(rk_param_info(inf, (size_t)dims.param_tensors - 1, &tinfo, NULL), NULL);

    /* Schedules. */
    rk_schedule s = rk_schedule_default();
    EXPECT_ERR(rk_set_schedule(trn, NULL, ERR), RK_E_BAD_POINTER, "schedule");
    EXPECT_ERR(rk_set_schedule(inf, &s, ERR), RK_E_NOT_TRAINABLE, NULL);
    s.kind = 9;
    EXPECT_ERR(rk_set_schedule(trn, &s, ERR), RK_E_BAD_CONFIG, "kind");
    s = rk_schedule_default();
    s.steps_per_epoch = 0;
    EXPECT_ERR(rk_set_schedule(trn, &s, ERR), RK_E_BAD_CONFIG, "steps_per_epoch");
    s = rk_schedule_default();
    s.total_steps = 0;
    EXPECT_ERR(rk_set_schedule(trn, &s, ERR), RK_E_BAD_CONFIG, NULL);
    s = rk_schedule_default();
    s.clip_grad_norm = -1.0f;
    EXPECT_ERR(rk_set_schedule(trn, &s, ERR), RK_E_BAD_CONFIG, "clip_grad_norm");
    s.clip_grad_norm = NAN;
    EXPECT_ERR(rk_set_schedule(trn, &s, ERR), RK_E_BAD_CONFIG, "clip_grad_norm");
    s = rk_schedule_default();
    s.kind = RK_SCHED_STEP;
    s.step_size = 0;
    EXPECT_ERR(rk_set_schedule(trn, &s, ERR), RK_E_BAD_CONFIG, "step_size");
    s.step_size = 1;
    s.gamma = 0.0f;
    EXPECT_ERR(rk_set_schedule(trn, &s, ERR), RK_E_BAD_CONFIG, "gamma");
    s = rk_schedule_default();
    s.kind = RK_SCHED_COSINE;
    s.min_lr = NAN;
    EXPECT_ERR(rk_set_schedule(trn, &s, ERR), RK_E_BAD_CONFIG, "min_lr");
    s.min_lr = 0.0f; /* the default total_steps (1) would make a cosine schedule constant */
    EXPECT_ERR(rk_set_schedule(trn, &s, ERR), RK_E_BAD_CONFIG, "total_steps");
    s.kind = RK_SCHED_WARMUP_COSINE;
    EXPECT_ERR(rk_set_schedule(trn, &s, ERR), RK_E_BAD_CONFIG, "total_steps");

    /* Training steps. */
    EXPECT_ERR(rk_train_step(inf, x, 2 * N_IN, y, 2, &info, ERR), RK_E_NOT_TRAINABLE, NULL);
    EXPECT_ERR(rk_train_step(trn, NULL, 2 * N_IN, y, 2, &info, ERR), RK_E_BAD_POINTER, "x");
    EXPECT_ERR(rk_train_step(trn, x, 2 * N_IN, NULL, 2, &info, ERR), RK_E_BAD_POINTER, "y");
    EXPECT_ERR(rk_train_step(trn, x, 2 * N_IN - 1, y, 2, &info, ERR), RK_E_BAD_LEN, "x");
    EXPECT_ERR(rk_train_step(trn, x, 2 * N_IN, y, 1, &info, ERR), RK_E_BAD_LEN, "y");
    EXPECT_SIZES(2, 1);
    EXPECT_ERR(rk_train_step(trn, x, 2 * N_IN, y, 3, &info, ERR), RK_E_BAD_LEN, "y");
    EXPECT_ERR(rk_train_step(trn, x, 0, y, 0, &info, ERR), RK_E_BAD_CONFIG, "batch");
    static float x3[3 * N_IN], y3[3];
    EXPECT_ERR(rk_train_step(trn, x3, 3 * N_IN, y3, 3, &info, ERR), RK_E_BATCH_TOO_LARGE, "batch");
    EXPECT_SIZES(2, 3);
    /* Buffers inside the arena. */
    const float *in_arena = (const float *)(void *)(tarena + tplan.total_bytes - 64);
    EXPECT_ERR(rk_train_step(trn, in_arena, 2 * N_IN, y, 2, &info, ERR), RK_E_BAD_POINTER, "x");
    EXPECT_ERR(rk_train_step(trn, x, 2 * N_IN, in_arena, 2, &info, ERR), RK_E_BAD_POINTER, "y");
    EXPECT_ERR(rk_train_step(trn, x, 2 * N_IN, y, 2, (rk_step_info *)(void *)(tarena + 64), ERR), RK_E_BAD_POINTER,
               "info");
    /* A buffer that straddles the arena's start. */
    const float *straddle = (const float *)(void *)(tarena - 8);
    EXPECT_ERR(rk_train_step(trn, straddle, 2 * N_IN, y, 2, &info, ERR), RK_E_BAD_POINTER, "x");
    /* Non-finite data: an error, and the parameters unchanged. */
    float *params;
    size_t n;
    CHECK_OK(rk_params(trn, &params, &n, NULL), NULL);
    static float before[256];
    CHECK(n <= 256, "%zu parameters", n);
    memcpy(before, params, n * sizeof(float));
    static float ybad[2];
    ybad[0] = INFINITY;
    EXPECT_ERR(rk_train_step(trn, x, 2 * N_IN, ybad, 2, &info, ERR), RK_E_NON_FINITE, NULL);
    static float xbad[2 * N_IN];
    xbad[3] = NAN;
    EXPECT_ERR(rk_train_step(trn, xbad, 2 * N_IN, y, 2, &info, ERR), RK_E_NON_FINITE, NULL);
    CHECK(t_first_diff(before, params, n) == n, "a non-finite step changed the parameters");
    /* A good step, with and without info; no step counted for the failures. */
    CHECK_OK(rk_train_step(trn, x, 2 * N_IN, y, 2, &info, &err), &err);
    CHECK(info.steps == 1, "the failed steps counted: steps %" PRIu64, info.steps);
    CHECK_OK(rk_train_step(trn, x, 2 * N_IN, y, 2, NULL, NULL), NULL);

    /* Loss without gradients. */
    EXPECT_ERR(rk_eval_loss(inf, x, 2 * N_IN, y, 2, &loss, ERR), RK_E_NOT_TRAINABLE, NULL);
    EXPECT_ERR(rk_eval_loss(trn, x, 2 * N_IN, y, 2, NULL, ERR), RK_E_BAD_POINTER, "loss");
    EXPECT_ERR(rk_eval_loss(trn, NULL, 2 * N_IN, y, 2, &loss, ERR), RK_E_BAD_POINTER, "x");
    EXPECT_ERR(rk_eval_loss(trn, x, 2 * N_IN, y, 1, &loss, ERR), RK_E_BAD_LEN, "y");
    EXPECT_ERR(rk_eval_loss(trn, x, 2 * N_IN, y, 2, (float *)(void *)(tarena + 128), ERR), RK_E_BAD_POINTER, "loss");

    /* Prediction. */
    EXPECT_ERR(rk_predict(inf, NULL, 2 * N_IN, out, 2, ERR), RK_E_BAD_POINTER, "x");
    EXPECT_ERR(rk_predict(inf, x, 2 * N_IN, NULL, 2, ERR), RK_E_BAD_POINTER, "out");
    EXPECT_ERR(rk_predict(inf, x, 2 * N_IN + 1, out, 2, ERR), RK_E_BAD_LEN, "x");
    EXPECT_ERR(rk_predict(inf, x, 2 * N_IN, out, 1, ERR), RK_E_BAD_LEN, "out");
    EXPECT_ERR(rk_predict(inf, x, SIZE_MAX, out, 2, ERR), RK_E_SIZE_OVERFLOW, NULL); /* bytes overflow */
    EXPECT_ERR(rk_predict(inf, x, SIZE_MAX / 4, out, 2, ERR), RK_E_SIZE_OVERFLOW, NULL); /* past isize */
    EXPECT_ERR(rk_predict(inf, x3, 3 * N_IN, big_out, 3, ERR), RK_E_BATCH_TOO_LARGE, "batch");
    EXPECT_ERR(rk_predict(inf, x, 2 * N_IN, (float *)(void *)(iarena + 256), 2, ERR), RK_E_BAD_POINTER, "out");
    EXPECT_ERR(rk_predict(inf, (const float *)(void *)(iarena + 256), 2 * N_IN, out, 2, ERR), RK_E_BAD_POINTER, "x");
    EXPECT_ERR(rk_predict(inf, x, 2 * N_IN, x + N_IN, 2, ERR), RK_E_BAD_POINTER, "out"); /* out overlaps x */
    /* A misaligned float pointer, made through an integer (implementation-defined in C, where a
     * pointer cast would be undefined). */
    float *misaligned = (float *)((uintptr_t)(void *)big_out + 1);
    EXPECT_ERR(rk_predict(inf, x, 2 * N_IN, misaligned, 2, ERR), RK_E_BAD_POINTER, "out");

    /* Generation needs an autoregressive transformer. */
    EXPECT_ERR(rk_generate(inf, prompt, 4, 4, big_out, 4, 4, 0, 0, ERR), RK_E_BAD_CONFIG, "generate");

    /* Checkpoints. */
    EXPECT(rk_checkpoint_size(inf, 1, &bytes, NULL), RK_E_NOT_TRAINABLE);
    CHECK_OK(rk_checkpoint_size(inf, 0, &bytes, NULL), NULL);
    CHECK(bytes <= sizeof ckpt, "checkpoint of %zu bytes", bytes);
    EXPECT_ERR(rk_checkpoint_save(inf, 1, ckpt, sizeof ckpt, &written, ERR), RK_E_NOT_TRAINABLE, NULL);
    EXPECT_ERR(rk_checkpoint_save(inf, 0, NULL, sizeof ckpt, &written, ERR), RK_E_BAD_POINTER, "buf");
    EXPECT_ERR(rk_checkpoint_save(inf, 0, ckpt, sizeof ckpt, NULL, ERR), RK_E_BAD_POINTER, "written");
    EXPECT_ERR(rk_checkpoint_save(inf, 0, iarena + 64, 256, &written, ERR), RK_E_BAD_POINTER, "buf");
    EXPECT_ERR(rk_checkpoint_save(inf, 0, ckpt, (size_t)8, &written, ERR), RK_E_BAD_LEN, NULL);
    CHECK(err.got == 8 || err.needed > 8, "a too-small buffer: needed %" PRIu64 ", got %" PRIu64, err.needed, err.got);
    CHECK_OK(rk_checkpoint_save(inf, 0, ckpt, sizeof ckpt, &written, &err), &err);
    size_t ckpt_len = written;
    EXPECT_ERR(rk_checkpoint_save(inf, 0, ckpt2, ckpt_len - 1, &written, ERR), RK_E_BAD_LEN, NULL);
    CHECK(err.needed >= ckpt_len && err.got == ckpt_len - 1, "one byte short: needed %" PRIu64 ", got %" PRIu64,
          err.needed, err.got);
    EXPECT_ERR(rk_checkpoint_load(inf, NULL, ckpt_len, 0, ERR), RK_E_BAD_POINTER, "buf");
    EXPECT_ERR(rk_checkpoint_load(inf, ckpt, ckpt_len - 1, 0, ERR), RK_E_BAD_CHECKPOINT, NULL);
    EXPECT_ERR(rk_checkpoint_load(inf, ckpt, 0, 0, ERR), RK_E_BAD_CHECKPOINT, NULL);
    EXPECT_ERR(rk_checkpoint_load(inf, ckpt, ckpt_len, 1, ERR), RK_E_NOT_TRAINABLE, NULL);
    EXPECT_ERR(rk_checkpoint_load(trn, ckpt, ckpt_len, 1, ERR), RK_E_BAD_CHECKPOINT, NULL); /* no training state */
    EXPECT_ERR(rk_checkpoint_load(inf, iarena + 64, 256, 0, ERR), RK_E_BAD_POINTER, "buf");
    static uint8_t garbage[512];
    memset(garbage, 0xFF, sizeof garbage);
    EXPECT_ERR(rk_checkpoint_load(inf, garbage, sizeof garbage, 0, ERR), RK_E_BAD_CHECKPOINT, NULL);
    memset(garbage, 0, sizeof garbage);
    EXPECT_ERR(rk_checkpoint_load(inf, garbage, sizeof garbage, 0, ERR), RK_E_BAD_CHECKPOINT, NULL);
    memcpy(garbage, "\x02\x00\x00\x00\x00\x00\x00\x00{}", 10); /* valid safetensors, no tensors */
    EXPECT_ERR(rk_checkpoint_load(inf, garbage, 10, 0, ERR), RK_E_BAD_CHECKPOINT, NULL);
    /* Every truncation fails, and so does rk_checkpoint_config on it (a prefix of at least the
     * header may still be a valid header). Corrupting header bytes fails or loads, and a failed
     * load leaves the parameters as they were. */
    float *iparams;
    CHECK_OK(rk_params(inf, &iparams, &n, NULL), NULL);
    memcpy(before, iparams, n * sizeof(float));
    rk_model_config back;
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | ckpt[i];
    CHECK(header_len + 8 < ckpt_len, "header of %" PRIu64 " bytes in a checkpoint of %zu", header_len, ckpt_len);
    for (size_t cut = 0; cut < ckpt_len; cut++) {
        EXPECT(rk_checkpoint_load(inf, ckpt, cut, 0, &err), RK_E_BAD_CHECKPOINT);
        if (cut < 8 + header_len) EXPECT(rk_checkpoint_config(ckpt, cut, &back, &err), RK_E_BAD_CHECKPOINT);
    }
    CHECK(t_first_diff(before, iparams, n) == n, "a failed load changed the parameters");
    t_lcg fuzz = {77u};
    for (int i = 0; i < 300; i++) {
        static const char tokens[] = "0123456789,:[]{}\"e-. ";
        memcpy(ckpt2, ckpt, ckpt_len);
        for (int k = 0; k < 2; k++) {
            uint32_t r = t_lcg_next(&fuzz);
            size_t pos = t_lcg_next(&fuzz) % (size_t)(8 + header_len);
            ckpt2[pos] = (r & 1) ? (uint8_t)tokens[(r >> 1) % (sizeof tokens - 1)] : (uint8_t)(r >> 8);
        }
        rk_status st = rk_checkpoint_load(inf, ckpt2, ckpt_len, 0, &err);
        CHECK(st == RK_OK || st == RK_E_BAD_CHECKPOINT, "a corrupted checkpoint gave %d (%s)", (int)st, rk_status_str(st));
        if (st != RK_OK) CHECK(t_first_diff(before, iparams, n) == n, "a failed load changed the parameters");
        memcpy(before, iparams, n * sizeof(float));
        st = rk_checkpoint_config(ckpt2, ckpt_len, &back, &err);
        CHECK(st == RK_OK || st == RK_E_BAD_CHECKPOINT, "rk_checkpoint_config of a corrupted checkpoint: %d", (int)st);
    }
    CHECK_OK(rk_checkpoint_load(inf, ckpt, ckpt_len, 0, &err), &err);
    EXPECT_ERR(rk_checkpoint_config(NULL, ckpt_len, &back, ERR), RK_E_BAD_POINTER, "buf");
    EXPECT_ERR(rk_checkpoint_config(ckpt, ckpt_len, NULL, ERR), RK_E_BAD_POINTER, "config");
    EXPECT_ERR(rk_checkpoint_config(ckpt, ckpt_len / 2, &back, ERR), RK_E_BAD_CHECKPOINT, NULL);
    EXPECT_ERR(rk_checkpoint_config(garbage, 10, &back, ERR), RK_E_BAD_CHECKPOINT, NULL);
    memset(garbage, 0xFF, sizeof garbage);
    EXPECT_ERR(rk_checkpoint_config(garbage, sizeof garbage, &back, ERR), RK_E_BAD_CHECKPOINT, NULL);
    CHECK_OK(rk_checkpoint_config(ckpt, ckpt_len, &back, &err), &err);

    /* A handle after rk_model_deinit; the arena can then hold a new model. */
    rk_model_deinit(inf);
    every_model_call(inf, RK_E_BAD_POINTER, "after rk_model_deinit");
    rk_model *again = NULL;
    CHECK_OK(rk_model_init(&cfg, &imode, iarena, (size_t)iplan.total_bytes, &again, &err), &err);
    CHECK(again == inf, "a new model in the same arena has another handle");
    CHECK_OK(rk_checkpoint_load(again, ckpt, ckpt_len, 0, &err), &err);
    CHECK_OK(rk_predict(again, x, 2 * N_IN, out, 2, &err), &err);
    rk_model_deinit(again);
    rk_model_deinit(trn);
}

/* A transformer and an encoder-decoder: sequence lengths and generation. */
static void sequence_calls(void) {
    rk_mode mode = t_inference(2);
    rk_model_config ar_cfg = t_small_transformer(1, RK_KV_NONE);
    rk_model *ar = t_model(&pool, &ar_cfg, &mode, NULL);
    CHECK_OK(rk_init_params(ar, 1, NULL), NULL);
    EXPECT(rk_set_seq_len(ar, 17, NULL), RK_E_BAD_CONFIG);
    EXPECT(rk_set_seq_len(ar, 0, NULL), RK_E_BAD_CONFIG);
    CHECK_OK(rk_set_seq_len(ar, 16, NULL), NULL);
    EXPECT(rk_set_target_len(ar, 4, NULL), RK_E_BAD_CONFIG);

    /* rk_generate(model, prompt, prompt_len, prompt_positions, out, out_len, steps, window, cache, err) */
    EXPECT_ERR(rk_generate(ar, prompt, 4, 4, big_out, 4, 4, 0, 1, ERR), RK_E_BAD_CONFIG, "kv_cache"); /* not planned */
    EXPECT_ERR(rk_generate(ar, prompt, 4, 4, big_out, 0, 0, 0, 0, ERR), RK_E_BAD_CONFIG, "steps");
    EXPECT_ERR(rk_generate(ar, prompt, 4, 0, big_out, 4, 4, 0, 0, ERR), RK_E_BAD_CONFIG, "prompt");
    EXPECT_ERR(rk_generate(ar, prompt, 4, 4, big_out, 4, 4, 17, 0, ERR), RK_E_BAD_CONFIG, "window");
    EXPECT_ERR(rk_generate(ar, prompt, 4, 4, big_out, 4, 4, 3, 0, ERR), RK_E_BAD_CONFIG, "prompt"); /* > window */
    EXPECT_ERR(rk_generate(ar, prompt, 4, 4, big_out, 20, 20, 0, 0, ERR), RK_E_CONTEXT_TOO_LONG, "steps");
    EXPECT_SIZES(23, 16);
    EXPECT_ERR(rk_generate(ar, prompt, 4, 4, big_out, 3, 4, 0, 0, ERR), RK_E_BAD_LEN, "out");
    EXPECT_ERR(rk_generate(ar, prompt, 3, 2, big_out, 4, 4, 0, 0, ERR), RK_E_BAD_LEN, "prompt");
    EXPECT_ERR(rk_generate(ar, prompt, 4, 1, big_out, 16, 4, 0, 0, ERR), RK_E_BATCH_TOO_LARGE, "batch"); /* 4 sequences */
    /* Step counts near SIZE_MAX: the context needed saturates (too long for an expanding
     * context) and n * steps * dim is checked (overflow), never a panic. */
    EXPECT_ERR(rk_generate(ar, prompt, 4, 4, big_out, 4, SIZE_MAX, 0, 0, ERR), RK_E_CONTEXT_TOO_LONG, "steps");
    rk_status st = rk_generate(ar, prompt, 4, 2, NULL, 0, (size_t)1 << (sizeof(size_t) * 8 - 1), 3, 0, &err);
    CHECK(st == RK_E_BAD_LEN || st == RK_E_SIZE_OVERFLOW, "2 sequences, 2^63 steps, window 3: %d", (int)st);
    EXPECT_ERR(rk_generate(ar, NULL, 4, 4, big_out, 4, 4, 0, 0, ERR), RK_E_BAD_POINTER, "prompt");
    EXPECT_ERR(rk_generate(ar, prompt, 4, 4, NULL, 4, 4, 0, 0, ERR), RK_E_BAD_POINTER, "out");
    EXPECT_ERR(rk_generate(ar, prompt, 4, 4, prompt, 4, 4, 0, 0, ERR), RK_E_BAD_POINTER, "out"); /* overlap */
    EXPECT_ERR(rk_generate(ar, prompt, 4, 4, (float *)(void *)((unsigned char *)(void *)ar + 512), 4, 4, 0, 0, ERR),
               RK_E_BAD_POINTER, "out");
    CHECK_OK(rk_generate(ar, prompt, 4, 4, big_out, 4, 4, 0, 0, &err), &err);

    rk_model_config reg_cfg = t_small_transformer(0, RK_KV_NONE);
    rk_model *reg = t_model(&pool, &reg_cfg, &mode, NULL);
    EXPECT_ERR(rk_generate(reg, prompt, 4, 4, big_out, 4, 4, 0, 0, ERR), RK_E_BAD_CONFIG, "generate");

    rk_model_config ed_cfg = rk_model_config_default(RK_MODEL_ENCODER_DECODER);
    rk_stack_config *s = &ed_cfg.u.encdec.stack;
    s->embed_dim = 8;
    s->ffn_dim = 8;
    s->num_heads = 2;
    s->num_groups = 1;
    s->max_seq_len = 8;
    ed_cfg.u.encdec.num_encoder_layers = 1;
    ed_cfg.u.encdec.num_decoder_layers = 1;
    rk_model *ed = t_model(&pool, &ed_cfg, &mode, NULL);
    EXPECT(rk_set_target_len(ed, 0, NULL), RK_E_BAD_CONFIG);
    EXPECT(rk_set_target_len(ed, 9, NULL), RK_E_BAD_CONFIG);
    CHECK_OK(rk_set_target_len(ed, 8, NULL), NULL);
    EXPECT_ERR(rk_generate(ed, prompt, 4, 4, big_out, 4, 4, 0, 0, ERR), RK_E_BAD_CONFIG, "generate");

    rk_model_deinit(ed);
    rk_model_deinit(reg);
    rk_model_deinit(ar);
}

int main(void) {
    t_quiet_stdio();
    status_strings();
    defaults();
    planning();
    model_calls();
    sequence_calls();
    every_model_call(NULL, RK_E_BAD_POINTER, "NULL");
    every_model_call((rk_model *)(void *)zeroed, RK_E_BAD_POINTER, "zeroed memory");
    for (size_t i = 0; i < sizeof zeroed; i++) CHECK(zeroed[i] == 0, "a call wrote byte %zu of the zeroed \"handle\"", i);
    rk_model_deinit(NULL);
    t_pool_check(&pool);
    printf("error_paths: %d checks: ok\n", checks);
    return 0;
}
