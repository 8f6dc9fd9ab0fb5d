#include <ctype.h>

#include "lib/greet.h"

void shout(char *text) {
    for (; *text; text++) {
        *text = (char)toupper((unsigned char)*text);
    }
}
