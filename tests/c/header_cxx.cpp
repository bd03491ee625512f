// regkern.h from C++17: the header compiles with -Wall -Wextra -Werror -pedantic, its enums are
// typed (`enum rk_activation : uint32_t`), and the library links into a C++ program. Plans an
// MLP, trains it a few steps in a static arena and predicts. Exits 0 on success.
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "regkern.h"

static_assert(std::is_same<std::underlying_type<rk_activation>::type, uint32_t>::value,
              "C++ sees the enums with their C type");
static_assert(RK_ARENA_ALIGN <= 64, "a 64-byte aligned arena is aligned enough");

namespace {

int fail(const char *what, rk_status s, const rk_error &err) {
    std::fprintf(stderr, "header_cxx: %s: %d (%s) %s\n", what, s, rk_status_str(s), err.message);
    return 1;
}

alignas(64) std::array<uint8_t, 1 << 16> arena;

}  // namespace

int main() {
    rk_model_config cfg = rk_model_config_default(RK_MODEL_MLP);
    cfg.u.mlp.n_in = 2;
    cfg.u.mlp.n_hidden = 1;
    cfg.u.mlp.latent_dims[0] = 8;
    cfg.u.mlp.act = RK_ACT_RELU;
    rk_mode mode{};
    mode.training = 1;
    mode.max_batch = 4;
    mode.optimizer = rk_optimizer_default(RK_OPT_ADAM, 0.05f);

    rk_error err{};
    rk_plan plan{};
    rk_status s = rk_model_plan(&cfg, &mode, &plan, &err);
    if (s != RK_OK) return fail("rk_model_plan", s, err);
    if (plan.total_bytes > arena.size()) {
        std::fprintf(stderr, "header_cxx: the plan needs %llu bytes\n", static_cast<unsigned long long>(plan.total_bytes));
        return 1;
    }
    rk_model *m = nullptr;
    s = rk_model_init(&cfg, &mode, arena.data(), arena.size(), &m, &err);
    if (s != RK_OK) return fail("rk_model_init", s, err);
    if ((s = rk_init_params(m, 1, NULL)) != RK_OK) return fail("rk_init_params", s, err);

    // y = x0 - x1 on four points.
    const std::array<float, 8> x{0.f, 0.f, 1.f, 0.f, 0.f, 1.f, 1.f, 1.f};
    const std::array<float, 4> y{0.f, 1.f, -1.f, 0.f};
    rk_step_info first{}, info{};
    for (int step = 0; step < 100; step++) {
        s = rk_train_step(m, x.data(), x.size(), y.data(), y.size(), &info, &err);
        if (s != RK_OK) return fail("rk_train_step", s, err);
        if (step == 0) first = info;
    }
    std::array<float, 4> out{};
    s = rk_predict(m, x.data(), x.size(), out.data(), out.size(), &err);
    if (s != RK_OK) return fail("rk_predict", s, err);
    if (!(info.loss < first.loss / 10) || !std::isfinite(out[0])) {
        std::fprintf(stderr, "header_cxx: loss %g -> %g\n", first.loss, info.loss);
        return 1;
    }
    rk_model_deinit(m);
    std::printf("header_cxx: regkern %u.%u.%u, loss %g -> %g, arena %llu bytes: ok\n", rk_version() >> 16,
                (rk_version() >> 8) & 0xff, rk_version() & 0xff, first.loss, info.loss,
                static_cast<unsigned long long>(plan.total_bytes));
    return 0;
}
