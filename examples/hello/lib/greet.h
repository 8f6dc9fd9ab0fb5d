#pragma once

/* Writes a greeting for `name` into `out` (at most `size` bytes). */
void greet(const char *name, char *out, unsigned long size);

/* Upper-cases `text` in place. */
void shout(char *text);
