/*
 * Helpers shared by the C test programs under tests/c/ (C11, header-only).
 *
 * - CHECK / CHECK_OK / CHECK_ERR: print where and why a check failed, then exit(1).
 * - t_pool: arenas carved from one static byte array, each between two guard zones that
 *   t_pool_check verifies, so a library write outside an arena is caught. Arenas are filled
 *   with a garbage pattern first, so nothing can rely on zeroed memory.
 * - t_quiet_stdio: gives stdout a static buffer, so that a run under valgrind shows "total heap
 *   usage: 0 allocs": neither the program nor the library allocates.
 * - t_lcg: the deterministic generator of the test data (documented below).
 */
#ifndef RK_TEST_H
#define RK_TEST_H

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "regkern.h"

/* ---------------------------------------------------------------------------------------- */
/* Failure reporting. */

static inline void t_fail(const char *file, int line, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));

static inline void t_fail(const char *file, int line, const char *what, const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s:%d: check failed: %s\n  ", file, line, what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* The message of an optional rk_error. */
static inline const char *t_msg(const rk_error *err) {
    return err ? err->message : "";
}

/* CHECK(cond, printf-format, args...): fail with the formatted message unless cond holds. */
#define CHECK(cond, ...)                                          \
    do {                                                          \
        if (!(cond)) t_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
    } while (0)

/* CHECK_OK(call, err): `call` must return RK_OK; `err` (an rk_error *, may be NULL) explains. */
#define CHECK_OK(call, err)                                                                  \
    do {                                                                                     \
        rk_status t_s_ = (call);                                                             \
        if (t_s_ != RK_OK)                                                                   \
            t_fail(__FILE__, __LINE__, #call, "status %d (%s): %s", (int)t_s_, rk_status_str(t_s_), \
                   t_msg(err));                                                              \
    } while (0)

/* ---------------------------------------------------------------------------------------- */
/* Bits and comparisons. */

static inline uint32_t t_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Index of the first element where a and b differ in bits, or n when they are identical. */
static inline size_t t_first_diff(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (t_bits(a[i]) != t_bits(b[i])) return i;
    return n;
}

/* Largest |a[i] - b[i]|. */
static inline float t_max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

static inline int t_all_finite(const float *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return 0;
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Test data: a 32-bit linear congruential generator (Numerical Recipes' "ranqd1":
 * state = 1664525 * state + 1013904223 mod 2^32). A uniform value in [-1, 1) is the top 24 bits
 * of the new state scaled by 2^-23, minus 1: every step is exact in f32, so any language that
 * ports these two lines gets the same floats (ffi/tests/c_programs.rs does). */

typedef struct {
    uint32_t state;
} t_lcg;

static inline uint32_t t_lcg_next(t_lcg *g) {
    g->state = g->state * 1664525u + 1013904223u;
    return g->state;
}

static inline float t_lcg_uniform(t_lcg *g) {
    return (float)(t_lcg_next(g) >> 8) * (1.0f / 8388608.0f) - 1.0f;
}

static inline void t_lcg_fill(t_lcg *g, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = t_lcg_uniform(g);
}

/* ---------------------------------------------------------------------------------------- */
/* Guarded arenas from a static pool. */

#define T_GUARD_BYTES 64   /* guard zone before and after every arena */
#define T_GUARD 0xA5       /* guard byte */
#define T_GARBAGE 0xCD     /* fill of a fresh arena */
#define T_MAX_ARENAS 16

typedef struct {
    unsigned char *mem;   /* the pool, 64-byte aligned */
    size_t cap;           /* its bytes */
    size_t used;          /* bytes handed out, guards included */
    size_t n;             /* arenas handed out */
    size_t at[T_MAX_ARENAS], len[T_MAX_ARENAS]; /* their offsets and lengths */
} t_pool;

/* `bytes` bytes, 64-byte aligned, filled with T_GARBAGE, between two guard zones. */
static inline unsigned char *t_pool_take(t_pool *p, size_t bytes) {
    size_t start = p->used + T_GUARD_BYTES; /* used is a multiple of 64 */
    size_t end = start + bytes + T_GUARD_BYTES;
    end = (end + 63) / 64 * 64;
    CHECK(p->n < T_MAX_ARENAS && end <= p->cap, "pool of %zu bytes cannot hold another arena of %zu bytes",
          p->cap, bytes);
    memset(p->mem + p->used, T_GUARD, end - p->used);
    memset(p->mem + start, T_GARBAGE, bytes);
    p->at[p->n] = start;
    p->len[p->n] = bytes;
    p->n++;
    p->used = end;
    return p->mem + start;
}

/* Every byte outside the arenas handed out must still be a guard byte. */
static inline void t_pool_check(const t_pool *p) {
    size_t pos = 0;
    for (size_t i = 0; i <= p->n; i++) {
        size_t until = i < p->n ? p->at[i] : p->used;
        for (; pos < until; pos++)
            CHECK(p->mem[pos] == T_GUARD, "guard byte %zu bytes before arena %zu was overwritten (0x%02x)",
                  until - pos, i, p->mem[pos]);
        if (i < p->n) pos = p->at[i] + p->len[i];
    }
}

/* A static pool of `bytes` bytes named `name`. */
#define T_POOL(name, bytes)                                 \
    static _Alignas(64) unsigned char name##_mem[(bytes)];  \
    static t_pool name = {name##_mem, (bytes), 0, 0, {0}, {0}}

/* ---------------------------------------------------------------------------------------- */
/* Heap-free stdio. */

/* Buffer stdout in a static array (glibc would malloc one on first output). */
static inline void t_quiet_stdio(void) {
    static char buf[1 << 14];
    setvbuf(stdout, buf, _IOFBF, sizeof buf);
}

/* ---------------------------------------------------------------------------------------- */
/* Model helpers. */

/* Plan `cfg` for `mode`, take an arena of exactly plan.total_bytes from `pool`, init the model
 * there; the plan goes to *plan_out when it is not NULL. */
static inline rk_model *t_model(t_pool *pool, const rk_model_config *cfg, const rk_mode *mode,
                                rk_plan *plan_out) {
    rk_plan plan;
    rk_error err;
    rk_model *m = NULL;
    CHECK_OK(rk_model_plan(cfg, mode, &plan, &err), &err);
    unsigned char *arena = t_pool_take(pool, (size_t)plan.total_bytes);
    CHECK_OK(rk_model_init(cfg, mode, arena, (size_t)plan.total_bytes, &m, &err), &err);
    CHECK(m == (rk_model *)(void *)arena, "the handle is not at the arena's start");
    if (plan_out) *plan_out = plan;
    return m;
}

static inline rk_mode t_inference(uint32_t max_batch) {
    rk_mode mode;
    memset(&mode, 0, sizeof mode);
    mode.training = 0;
    mode.max_batch = max_batch;
    mode.optimizer = rk_optimizer_default(RK_OPT_ADAM, 1e-3f);
    return mode;
}

static inline rk_mode t_training(uint32_t max_batch, rk_optimizer opt) {
    rk_mode mode;
    memset(&mode, 0, sizeof mode);
    mode.training = 1;
    mode.max_batch = max_batch;
    mode.optimizer = opt;
    return mode;
}

/* An MLP n_in → hidden → 1 (relu). */
static inline rk_model_config t_mlp(uint32_t n_in, uint32_t hidden) {
    rk_model_config cfg = rk_model_config_default(RK_MODEL_MLP);
    cfg.u.mlp.n_in = n_in;
    cfg.u.mlp.n_hidden = 1;
    cfg.u.mlp.latent_dims[0] = hidden;
    cfg.u.mlp.n_out = 1;
    return cfg;
}

/* A small stack: E 16, F 32, H 4, G 2 (GQA), 1 → 1. */
static inline void t_small_stack(rk_stack_config *s, uint32_t max_seq_len) {
    s->input_dim = 1;
    s->output_dim = 1;
    s->embed_dim = 16;
    s->ffn_dim = 32;
    s->num_heads = 4;
    s->num_groups = 2;
    s->attention = RK_ATTN_GQA;
    s->max_seq_len = max_seq_len;
}

/* A small transformer: the small stack, 2 layers, max_seq_len 16. */
static inline rk_model_config t_small_transformer(uint8_t autoregressive, uint32_t kv_cache) {
    rk_model_config cfg = rk_model_config_default(RK_MODEL_TRANSFORMER);
    rk_stack_config *s = &cfg.u.transformer.stack;
    t_small_stack(s, 16);
    s->kv_cache = kv_cache;
    cfg.u.transformer.num_layers = 2;
    cfg.u.transformer.autoregressive = autoregressive;
    return cfg;
}

#endif /* RK_TEST_H */
