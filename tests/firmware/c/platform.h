/* What the C scenario needs from where it runs: a line of output and an exit. The firmware
 * (platform_fw.c) writes through semihosting; the host (platform_host.c) to stdout. */
#ifndef REGKERN_FW_PLATFORM_H
#define REGKERN_FW_PLATFORM_H

/* The word the stack is painted with at reset (startup.c). */
#define STACK_PAINT 0xccccccccu

/* One line of results (no newline). */
void platform_line(const char *text);

/* One `#` line of measurements, which the host does not print and CI's diff ignores. */
void platform_note(const char *text);

/* End the program: status 0 if `ok`, else 1. The firmware prints its stack high-water mark. */
__attribute__((noreturn)) void platform_exit(int ok);

#endif
