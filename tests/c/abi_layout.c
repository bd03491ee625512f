/*
 * The C compiler's view of regkern.h's structs: size and alignment of each, and the offsets of
 * the fields that follow a narrower one (where padding rules could differ). Prints
 *
 *     size rk_plan 72 8          (type, sizeof, _Alignof)
 *     offset rk_mode optimizer 8 (type, field, offsetof)
 *
 * and ffi/tests/c_programs.rs compares every line with the Rust definitions the library was
 * compiled from (size_of, align_of, offset_of!).
 */
#include <stddef.h>
#include <stdio.h>

#include "regkern.h"

#define SIZE(t) printf("size %s %zu %zu\n", #t, sizeof(t), _Alignof(t))
#define OFFSET(t, f) printf("offset %s %s %zu\n", #t, #f, offsetof(t, f))

int main(void) {
    static char buf[4096]; /* stdout's buffer: no heap (see rk_test.h) */
    setvbuf(stdout, buf, _IOFBF, sizeof buf);
    SIZE(rk_linear_config);
    SIZE(rk_mlp_config);
    SIZE(rk_stack_config);
    SIZE(rk_transformer_config);
    SIZE(rk_encdec_config);
    SIZE(rk_model_config_u);
    SIZE(rk_model_config);
    SIZE(rk_optimizer);
    SIZE(rk_schedule);
    SIZE(rk_mode);
    SIZE(rk_plan);
    SIZE(rk_error);
    SIZE(rk_dims);
    SIZE(rk_step_info);
    SIZE(rk_tensor_info);
    SIZE(rk_status);
    OFFSET(rk_mlp_config, latent_dims);
    OFFSET(rk_mlp_config, n_out);
    OFFSET(rk_mlp_config, act);
    OFFSET(rk_stack_config, moe);
    OFFSET(rk_stack_config, num_experts);
    OFFSET(rk_stack_config, capacity_factor);
    OFFSET(rk_stack_config, alpha);
    OFFSET(rk_transformer_config, num_layers);
    OFFSET(rk_transformer_config, autoregressive);
    OFFSET(rk_encdec_config, num_encoder_layers);
    OFFSET(rk_encdec_config, num_decoder_layers);
    OFFSET(rk_model_config, u);
    OFFSET(rk_optimizer, nesterov);
    OFFSET(rk_optimizer, weight_decay);
    OFFSET(rk_optimizer, alpha);
    OFFSET(rk_optimizer, centered);
    OFFSET(rk_schedule, steps_per_epoch);
    OFFSET(rk_schedule, total_steps);
    OFFSET(rk_schedule, clip_grad_norm);
    OFFSET(rk_mode, max_batch);
    OFFSET(rk_mode, optimizer);
    OFFSET(rk_mode, seq_len);
    OFFSET(rk_mode, lean_memory);
    OFFSET(rk_plan, total_bytes);
    OFFSET(rk_error, needed);
    OFFSET(rk_error, got);
    OFFSET(rk_error, field);
    OFFSET(rk_error, message);
    OFFSET(rk_dims, param_floats);
    OFFSET(rk_dims, training);
    OFFSET(rk_step_info, steps);
    OFFSET(rk_step_info, moe_aux);
    OFFSET(rk_step_info, moe_dropped);
    OFFSET(rk_tensor_info, rank);
    OFFSET(rk_tensor_info, shape);
    OFFSET(rk_tensor_info, offset);
    OFFSET(rk_tensor_info, len);
    return 0;
}
