#include <stdio.h>
#include <string.h>

#include "greet.h"

int main(int argc, char **argv) {
    char line[128];
    greet(argc > 1 ? argv[1] : "weft", line, sizeof line);
    if (argc > 2 && strcmp(argv[2], "--shout") == 0) {
        shout(line);
    }
    puts(line);
    return 0;
}
