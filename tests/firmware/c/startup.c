/*
 * Minimal Cortex-M4F startup for mps2-an386: vector table, reset (paint the stack, copy .data,
 * zero .bss, enable the FPU, run main, exit through semihosting), and every other exception
 * ending the program with a failure status.
 */
#include <stdint.h>

#include "platform.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _stack_top;
int main(void);

void Reset_Handler(void);
void Fault_Handler(void);

/* The initial stack pointer, then the 15 system exceptions (no device interrupts are used). */
__attribute__((section(".vector_table"), used)) static const struct {
    void *initial_sp;
    void (*handlers[15])(void);
} vector_table = {
    &_stack_top,
    {Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, 0, 0, 0, 0,
     Fault_Handler, Fault_Handler, 0, Fault_Handler, Fault_Handler},
};

/* Naked: no prologue, so the paint may cover the whole stack, up to the initial SP. */
__attribute__((naked, noreturn)) void Reset_Handler(void) {
    __asm volatile(
        "ldr r0, =_stack_bottom\n"
        "ldr r1, =_stack_top\n"
        "ldr r2, =0xcccccccc\n" /* STACK_PAINT in platform.h */
        "1: cmp r0, r1\n"
        "bhs 2f\n"
        "str r2, [r0], #4\n"
        "b 1b\n"
        "2: b reset_c\n");
}

/* Called from Reset_Handler with the stack painted. */
__attribute__((noreturn, used)) void reset_c(void) {
    for (uint32_t *src = &_sidata, *dst = &_sdata; dst < &_edata;) *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    /* CPACR: full access to CP10 and CP11 (the FPU), before any floating-point instruction. */
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
    __asm volatile("dsb\n isb" ::: "memory");
    platform_exit(main() == 0);
}

void Fault_Handler(void) {
    platform_line("fault");
    platform_exit(0);
}
