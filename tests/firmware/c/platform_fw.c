/* The firmware platform: semihosting output and exit, stack high-water mark (startup.c paints
 * the stack at reset). */
#include <stdint.h>
#include <string.h>

#include "line.h"
#include "platform.h"

extern uint32_t _stack_bottom, _stack_top;

/* Semihosting call: operation in r0, argument in r1, result in r0. */
static uint32_t semihost(uint32_t op, const void *arg) {
    register uint32_t r0 __asm("r0") = op;
    register const void *r1 __asm("r1") = arg;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

enum { SYS_OPEN = 0x01, SYS_WRITE = 0x05, SYS_EXIT = 0x18 };
enum { ADP_STOPPED_APPLICATION_EXIT = 0x20026, ADP_STOPPED_RUN_TIME_ERROR = 0x20023 };

/* The host's stdout: ":tt" opened for writing (mode 4, "w"), as the Rust firmware does, so both
 * write to QEMU's stdout (SYS_WRITE0 would go to QEMU's console instead). */
static int32_t host_stdout = -1;

static void write0(const char *s) {
    if (host_stdout < 0) {
        const uint32_t open_args[3] = {(uint32_t)(uintptr_t)":tt", 4, 3};
        host_stdout = (int32_t)semihost(SYS_OPEN, open_args);
        if (host_stdout < 0) return;
    }
    const uint32_t write_args[3] = {(uint32_t)host_stdout, (uint32_t)(uintptr_t)s, (uint32_t)strlen(s)};
    semihost(SYS_WRITE, write_args);
}

void platform_line(const char *text) {
    write0(text);
    write0("\n");
}

void platform_note(const char *text) {
    write0("# ");
    platform_line(text);
}

void platform_exit(int ok) {
    const uint32_t *at = &_stack_bottom;
    while (at < &_stack_top && *at == STACK_PAINT) at++;
    line l;
    line_start(&l, "stack_high_water");
    line_dec(&l, (uint64_t)((uintptr_t)&_stack_top - (uintptr_t)at));
    line_word(&l, "of");
    line_dec(&l, (uint64_t)((uintptr_t)&_stack_top - (uintptr_t)&_stack_bottom));
    platform_note(l.buf);
    /* On 32-bit targets SYS_EXIT takes the reason code itself, not a pointer to a block. */
    semihost(SYS_EXIT, (const void *)(uintptr_t)(ok ? ADP_STOPPED_APPLICATION_EXIT : ADP_STOPPED_RUN_TIME_ERROR));
    for (;;) __asm volatile("bkpt 0");
}
