/* The host platform: lines to stdout; measurements are the firmware's only. */
#include <stdio.h>
#include <stdlib.h>

#include "platform.h"

void platform_line(const char *text) { puts(text); }

void platform_note(const char *text) { (void)text; }

void platform_exit(int ok) { exit(ok ? 0 : 1); }

/* The host has no startup.c: main's status is the exit status, as in the firmware. */
