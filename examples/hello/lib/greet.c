#include <stdio.h>

#include "greet.h"
#include "version.h"

void greet(const char *name, char *out, unsigned long size) {
    snprintf(out, size, "hello, %s (greet %s)", name, HELLO_VERSION);
}
